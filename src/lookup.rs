//! `dotstub query NAME [TYPE]`: one question through the configured
//! upstreams, on the same path the daemon uses, printed dig-style with the
//! upstream that answered, the round-trip time and what padding did.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use hickory_proto::{
    op::{Edns, Message, Query as HickoryQuery},
    rr::{Name, RecordType, rdata::opt::EdnsOption},
};

use crate::{
    cache::Clock,
    config::Config,
    dnssec::Validator,
    metrics::Metrics,
    padding::PaddingPolicy,
    resolver::{ResolveError, Resolver, Settings},
    upstream::{Pool, SetupError},
    wire::{Query, Recipient, Transport, UPSTREAM_UDP_SIZE, option_code},
};

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The name or type does not parse.
    #[error(transparent)]
    Question(#[from] QuestionError),
    /// TLS could not be set up for an upstream.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// No upstream answered.
    #[error("no answer")]
    Resolve(#[from] ResolveError),
}

/// A name or record type given on the command line that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum QuestionError {
    /// The name is not a valid domain name.
    #[error("invalid domain name {0:?}")]
    BadName(String),
    /// The type is neither a known mnemonic nor a number.
    #[error("unknown record type {0:?} (use a mnemonic like AAAA or a number like 65)")]
    BadType(String),
}

/// What `dotstub query` prints.
#[derive(Debug)]
pub struct LookupReport {
    /// The reply as a client would receive it over TCP.
    pub reply: Message,
    /// Label of the upstream that answered.
    pub upstream: String,
    /// Its address and TLS name.
    pub upstream_address: String,
    /// From writing the query to reading the answer.
    pub rtt: Duration,
    /// Padding policy the query was sent with.
    pub padding: PaddingPolicy,
    /// Size of the upstream's answer on the wire.
    pub answer_len: usize,
    /// Whether the upstream padded its answer.
    pub answer_padded: bool,
    /// The block the upstream pads its answers to, inferred from every
    /// padded answer of this lookup (DNSSEC key fetches included).
    pub answer_block: Option<usize>,
}

/// Resolves `name`/`qtype` through the upstreams of `config`.
pub async fn lookup(config: &Config, name: &str, qtype: &str) -> Result<LookupReport, LookupError> {
    let packet = client_query(name, qtype)?;
    let query = Query::parse(&packet).map_err(|_| QuestionError::BadName(name.to_owned()))?;
    let metrics = Arc::new(Metrics::new(
        config.upstreams.iter().map(|u| u.label.as_str()),
    ));
    let pool = Pool::new(config, &metrics, false)?;
    let settings = Settings::from_config(config);
    let resolver = Resolver::new(
        pool,
        None,
        Validator::from_config(&config.dnssec),
        settings,
        Clock::system(),
        Arc::clone(&metrics),
    );
    let resolved = resolver.resolve(&query).await?;
    let mut out = Vec::new();
    let len = resolved
        .answer
        .write_for_client(
            &Recipient {
                query: &query,
                transport: Transport::Tcp,
                udp_size: UPSTREAM_UDP_SIZE,
            },
            &mut out,
        )
        .map_err(|_| ResolveError::Unreachable)?
        .len;
    let reply = out
        .get(..len)
        .and_then(|bytes| Message::from_vec(bytes).ok())
        .ok_or(ResolveError::Unreachable)?;
    let upstream = config.upstreams.get(resolved.upstream);
    Ok(LookupReport {
        reply,
        upstream: resolver.pool().label(resolved.upstream).to_owned(),
        upstream_address: upstream
            .map(|u| {
                let first = u
                    .addresses
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                format!("{first}, tls name {}", u.tls_name.to_str())
            })
            .unwrap_or_default(),
        rtt: resolved.rtt,
        padding: upstream.map_or(config.padding, |u| u.padding),
        answer_len: resolved.len,
        answer_padded: resolved.padded,
        answer_block: metrics
            .upstream(resolved.upstream)
            .and_then(|counters| counters.answer_block()),
    })
}

/// The query a client would send: RD=1, AD=1 (to learn whether the answer
/// is secure, RFC 6840 §5.7) and an OPT record.
fn client_query(name: &str, qtype: &str) -> Result<Vec<u8>, QuestionError> {
    let fqdn = parse_name(name)?;
    let qtype = parse_qtype(qtype)?;
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.metadata.recursion_desired = true;
    message.metadata.authentic_data = true;
    message.add_query(HickoryQuery::query(fqdn, qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(UPSTREAM_UDP_SIZE);
    message.set_edns(edns);
    message
        .to_vec()
        .map_err(|_| QuestionError::BadName(name.to_owned()))
}

/// A domain name, absolute (international names as UTF-8 too).
pub(crate) fn parse_name(name: &str) -> Result<Name, QuestionError> {
    let mut fqdn = Name::from_str(name).map_err(|_| QuestionError::BadName(name.to_owned()))?;
    fqdn.set_fqdn(true);
    Ok(fqdn)
}

/// A record type: a mnemonic (`aaaa`, `MX`), `TYPE65`, or a number.
pub(crate) fn parse_qtype(text: &str) -> Result<RecordType, QuestionError> {
    parse_type(text).ok_or_else(|| QuestionError::BadType(text.to_owned()))
}

fn parse_type(text: &str) -> Option<RecordType> {
    let upper = text.to_ascii_uppercase();
    let number = upper.strip_prefix("TYPE").unwrap_or(&upper);
    number
        .parse::<u16>()
        .ok()
        .map(RecordType::from)
        .or_else(|| RecordType::from_str(&upper).ok())
}

impl fmt::Display for LookupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_header(f)?;
        self.write_extended_error(f)?;
        self.write_sections(f)?;
        self.write_transport(f)
    }
}

impl LookupReport {
    /// The header lines, as dig prints them.
    fn write_header(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meta = &self.reply.metadata;
        writeln!(
            f,
            ";; ->>HEADER<<- opcode: {}, status: {}, id: {}",
            meta.op_code, meta.response_code, meta.id
        )?;
        let flags: Vec<&str> = [
            (true, "qr"),
            (meta.authoritative, "aa"),
            (meta.truncation, "tc"),
            (meta.recursion_desired, "rd"),
            (meta.recursion_available, "ra"),
            (meta.authentic_data, "ad"),
            (meta.checking_disabled, "cd"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        writeln!(
            f,
            ";; flags: {}; QUERY: {}, ANSWER: {}, AUTHORITY: {}, ADDITIONAL: {}",
            flags.join(" "),
            self.reply.queries.len(),
            self.reply.answers.len(),
            self.reply.authorities.len(),
            self.reply.additionals.len(),
        )
    }

    /// The Extended DNS Error (RFC 8914), when the reply has one.
    fn write_extended_error(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(edns) = &self.reply.edns else {
            return Ok(());
        };
        for (_, option) in edns.options().as_ref() {
            if let EdnsOption::Unknown(option_code::EXTENDED_ERROR, data) = option
                && let Some((code, text)) = data.split_first_chunk::<2>()
            {
                let code = u16::from_be_bytes(*code);
                let text = String::from_utf8_lossy(text);
                writeln!(f, ";; EXTENDED ERROR: {code} ({text})")?;
            }
        }
        Ok(())
    }

    /// The question and the non-empty record sections.
    fn write_sections(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n;; QUESTION SECTION:")?;
        for query in &self.reply.queries {
            let (class, qtype) = (query.query_class(), query.query_type());
            writeln!(f, ";{}\t\t{class}\t{qtype}", query.name())?;
        }
        for (title, records) in [
            ("ANSWER", &self.reply.answers),
            ("AUTHORITY", &self.reply.authorities),
            ("ADDITIONAL", &self.reply.additionals),
        ] {
            if !records.is_empty() {
                writeln!(f, "\n;; {title} SECTION:")?;
                for record in records {
                    writeln!(f, "{record}")?;
                }
            }
        }
        Ok(())
    }

    /// What dig cannot show: which upstream, how long, and the padding.
    fn write_transport(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (upstream, address) = (&self.upstream, &self.upstream_address);
        writeln!(f, "\n;; UPSTREAM: {upstream} ({address})")?;
        writeln!(f, ";; RTT: {} msec", self.rtt.as_millis())?;
        writeln!(f, ";; QUERY PADDING: {}", self.padding)?;
        let len = self.answer_len;
        write!(f, ";; ANSWER SIZE: {len} octets on the wire, ")?;
        match (self.answer_padded, self.answer_block) {
            (false, _) => f.write_str("not padded"),
            (true, Some(block)) => write!(f, "padded by the upstream to a multiple of {block}"),
            (true, None) => f.write_str("padded by the upstream, to no common block"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mnemonics_and_numbers() {
        assert_eq!(parse_type("aaaa"), Some(RecordType::AAAA));
        assert_eq!(parse_type("MX"), Some(RecordType::MX));
        assert_eq!(parse_type("TYPE65"), Some(RecordType::HTTPS));
        assert_eq!(parse_type("28"), Some(RecordType::AAAA));
        assert_eq!(parse_type("NOPE"), None);
    }

    #[test]
    fn builds_a_query_dotstub_accepts() {
        let packet = client_query("Example.COM", "a").unwrap();
        let query = Query::parse(&packet).unwrap();
        assert!(
            query
                .question()
                .name()
                .eq_ignore_ascii_case(b"\x07example\x03com\x00")
        );
        assert_eq!(query.question().qtype(), 1);
        assert!(query.edns().is_some());
        assert!(matches!(
            client_query("a..b", "A"),
            Err(QuestionError::BadName(_))
        ));
    }
}
