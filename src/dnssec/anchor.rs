//! Trust anchors: the DS or DNSKEY records validation starts from. Built in,
//! the root's key-signing keys 20326 (2017) and 38696 (2024); or read from a
//! file in zone-file format, as unbound's `trust-anchor-file` takes them:
//!
//! ```text
//! . 3600 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
//! example. IN DNSKEY 257 3 13 ( mdsswUyr3DPW132mOi8V9xESWE8jTo0d
//!                               xCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ== )
//! ```
//!
//! Comments start with `;`; parentheses continue a record over lines; the
//! TTL and class are optional and ignored; owners are absolute names.

use data_encoding::{BASE64, HEXUPPER_PERMISSIVE};
use hickory_proto::{
    dnssec::{
        Algorithm, DigestType, PublicKey, PublicKeyBuf,
        rdata::{DNSKEY, DS},
    },
    rr::Name,
};

/// One trust anchor record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorRecord {
    /// A DS: the DNSKEY whose digest it holds is trusted.
    Ds(DS),
    /// A DNSKEY, trusted as it is.
    Dnskey(DNSKEY),
}

impl AnchorRecord {
    /// Whether `key`, a DNSKEY of `owner`, is this anchor.
    pub fn matches(&self, owner: &Name, key: &DNSKEY) -> bool {
        match self {
            Self::Ds(ds) => super::chain::ds_matches(ds, owner, key),
            Self::Dnskey(anchor) => {
                anchor.public_key().algorithm() == key.public_key().algorithm()
                    && anchor.public_key().public_bytes() == key.public_key().public_bytes()
            }
        }
    }
}

/// The anchors of one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The zone's apex, lowercase.
    pub zone: Name,
    /// Its DS and DNSKEY anchors.
    pub records: Vec<AnchorRecord>,
}

/// Every configured trust anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchors {
    anchors: Vec<Anchor>,
}

/// Why a trust anchor file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct AnchorError {
    /// 1-based line where the record starts.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

impl Default for TrustAnchors {
    /// The root zone's key-signing keys, as hickory-proto ships them.
    fn default() -> Self {
        let roots = hickory_proto::dnssec::TrustAnchors::default();
        let records = (0..roots.len())
            .filter_map(|index| roots.get(index))
            .map(|key| {
                let key = PublicKeyBuf::new(key.public_bytes().to_vec(), key.algorithm());
                AnchorRecord::Dnskey(DNSKEY::new(true, true, false, key))
            })
            .collect();
        Self {
            anchors: vec![Anchor {
                zone: Name::root(),
                records,
            }],
        }
    }
}

impl TrustAnchors {
    /// Reads anchors from zone-file text; at least one is required.
    pub fn parse(text: &str) -> Result<Self, AnchorError> {
        let mut anchors: Vec<Anchor> = Vec::new();
        let mut last_line = 1;
        for (line, tokens) in records(text)? {
            last_line = line;
            let (zone, record) =
                parse_record(&tokens).map_err(|reason| AnchorError { line, reason })?;
            match anchors.iter_mut().find(|anchor| anchor.zone == zone) {
                Some(anchor) => anchor.records.push(record),
                None => anchors.push(Anchor {
                    zone,
                    records: vec![record],
                }),
            }
        }
        if anchors.is_empty() {
            return Err(AnchorError {
                line: last_line,
                reason: "no DS or DNSKEY record in the file".to_owned(),
            });
        }
        Ok(Self { anchors })
    }

    /// The deepest anchor at or above `name`.
    pub fn closest(&self, name: &Name) -> Option<&Anchor> {
        self.anchors
            .iter()
            .filter(|anchor| anchor.zone.zone_of(name))
            .max_by_key(|anchor| anchor.zone.num_labels())
    }

    /// Every anchor.
    pub fn iter(&self) -> impl Iterator<Item = &Anchor> {
        self.anchors.iter()
    }
}

/// The records of `text`: the line each starts on and its tokens, comments
/// dropped and parenthesised continuations joined.
fn records(text: &str) -> Result<Vec<(usize, Vec<&str>)>, AnchorError> {
    let mut records = Vec::new();
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let content = line.split(';').next().unwrap_or_default();
        let (start, mut tokens) = open.take().unwrap_or((line_number, Vec::new()));
        let mut depth = usize::from(!tokens.is_empty());
        for piece in content.split_whitespace() {
            for token in split_parentheses(piece) {
                match token {
                    "(" if depth == 0 => depth = 1,
                    ")" if depth == 1 => depth = 0,
                    "(" | ")" => {
                        return Err(AnchorError {
                            line: line_number,
                            reason: format!("unbalanced parenthesis {token:?}"),
                        });
                    }
                    _ => tokens.push(token),
                }
            }
        }
        if depth == 1 {
            open = Some((start, tokens));
        } else if !tokens.is_empty() {
            records.push((start, tokens));
        }
    }
    if let Some((line, _)) = open {
        return Err(AnchorError {
            line,
            reason: "parenthesis opened here is never closed".to_owned(),
        });
    }
    Ok(records)
}

/// `piece` with `(` and `)` split off as tokens of their own.
fn split_parentheses(piece: &str) -> impl Iterator<Item = &str> {
    let mut rest = piece;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = match rest.find(['(', ')']) {
            Some(0) => 1,
            Some(at) => at,
            None => rest.len(),
        };
        let (token, tail) = rest.split_at(end);
        rest = tail;
        Some(token)
    })
}

fn parse_record(tokens: &[&str]) -> Result<(Name, AnchorRecord), String> {
    let (owner, mut rest) = tokens.split_first().ok_or("empty record")?;
    if !owner.ends_with('.') {
        return Err(format!(
            "owner {owner:?} is not an absolute name (ending in '.')"
        ));
    }
    let zone = Name::from_ascii(owner)
        .map_err(|err| format!("owner {owner:?}: {err}"))?
        .to_lowercase();
    // Optional TTL and class, in either order.
    while let Some((token, tail)) = rest.split_first() {
        if token.bytes().all(|b| b.is_ascii_digit()) || token.eq_ignore_ascii_case("IN") {
            rest = tail;
        } else {
            break;
        }
    }
    let (rtype, rdata) = rest.split_first().ok_or("missing record type")?;
    let record = if rtype.eq_ignore_ascii_case("DS") {
        AnchorRecord::Ds(parse_ds(rdata)?)
    } else if rtype.eq_ignore_ascii_case("DNSKEY") {
        AnchorRecord::Dnskey(parse_dnskey(rdata)?)
    } else {
        return Err(format!(
            "expected a DS or DNSKEY record, found type {rtype}"
        ));
    };
    Ok((zone, record))
}

fn number<T: std::str::FromStr>(tokens: &[&str], index: usize, what: &str) -> Result<T, String> {
    let token = tokens.get(index).ok_or_else(|| format!("missing {what}"))?;
    token
        .parse()
        .map_err(|_| format!("{what}: expected a number, found {token:?}"))
}

fn parse_ds(rdata: &[&str]) -> Result<DS, String> {
    let key_tag: u16 = number(rdata, 0, "DS key tag")?;
    let algorithm = Algorithm::from_u8(number(rdata, 1, "DS algorithm")?);
    let digest_type = DigestType::from(number::<u8>(rdata, 2, "DS digest type")?);
    let hex = rdata.get(3..).unwrap_or_default().concat();
    if hex.is_empty() {
        return Err("missing DS digest".to_owned());
    }
    let digest = HEXUPPER_PERMISSIVE
        .decode(hex.as_bytes())
        .map_err(|err| format!("DS digest is not hexadecimal: {err}"))?;
    Ok(DS::new(key_tag, algorithm, digest_type, digest))
}

fn parse_dnskey(rdata: &[&str]) -> Result<DNSKEY, String> {
    let flags: u16 = number(rdata, 0, "DNSKEY flags")?;
    let protocol: u8 = number(rdata, 1, "DNSKEY protocol")?;
    if protocol != 3 {
        return Err(format!("DNSKEY protocol must be 3, found {protocol}"));
    }
    if flags & 0x0100 == 0 {
        return Err(format!("DNSKEY flags {flags} lack the zone key bit (256)"));
    }
    let algorithm = Algorithm::from_u8(number(rdata, 2, "DNSKEY algorithm")?);
    let b64 = rdata.get(3..).unwrap_or_default().concat();
    if b64.is_empty() {
        return Err("missing DNSKEY public key".to_owned());
    }
    let key = BASE64
        .decode(b64.as_bytes())
        .map_err(|err| format!("DNSKEY public key is not base64: {err}"))?;
    Ok(DNSKEY::with_flags(flags, PublicKeyBuf::new(key, algorithm)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_anchors_are_the_root_ksks_20326_and_38696() {
        let anchors = TrustAnchors::default();
        let root = anchors
            .closest(&Name::from_ascii("example.com.").unwrap())
            .unwrap();
        assert_eq!(root.zone, Name::root());
        let mut tags: Vec<u16> = root
            .records
            .iter()
            .map(|record| match record {
                AnchorRecord::Dnskey(key) => key.calculate_key_tag().unwrap(),
                AnchorRecord::Ds(ds) => ds.key_tag(),
            })
            .collect();
        tags.sort_unstable();
        assert_eq!(tags, [20326, 38696]);
    }

    #[test]
    fn reads_ds_and_multi_line_dnskey_records() {
        let text = "; test anchors\n\
            . 3600 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n\
            example. IN DNSKEY 257 3 13 ( mdsswUyr3DPW132mOi8V9xESWE8jTo0d\n\
            \txCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ== ) ; KSK\n";
        let anchors = TrustAnchors::parse(text).unwrap();
        let example = Name::from_ascii("www.Example.").unwrap();
        let anchor = anchors.closest(&example).unwrap();
        assert_eq!(anchor.zone, Name::from_ascii("example.").unwrap());
        let AnchorRecord::Dnskey(key) = &anchor.records[0] else {
            panic!("expected a DNSKEY anchor");
        };
        assert_eq!(key.public_key().algorithm(), Algorithm::ECDSAP256SHA256);
        assert_eq!(key.public_key().public_bytes().len(), 64);
        let root = anchors.closest(&Name::from_ascii("org.").unwrap()).unwrap();
        assert!(matches!(&root.records[0], AnchorRecord::Ds(ds) if ds.key_tag() == 20326));
    }

    #[test]
    fn refuses_bad_records_with_their_line() {
        let cases = [
            ("example. IN A 192.0.2.1\n", 1, "expected a DS or DNSKEY"),
            ("\n\nexample IN DS 1 8 2 AB\n", 3, "not an absolute name"),
            (". IN DS 1 8 2 XYZ\n", 1, "not hexadecimal"),
            (". IN DNSKEY 257 2 8 AwEAAQ==\n", 1, "protocol must be 3"),
            (". IN DS 1 8 2 ( AB\n", 1, "never closed"),
            ("; nothing\n", 1, "no DS or DNSKEY"),
        ];
        for (text, line, reason) in cases {
            let error = TrustAnchors::parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.reason.contains(reason), "{text:?}: {error}");
        }
    }
}
