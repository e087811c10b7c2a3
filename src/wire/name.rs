//! Domain names in wire form (RFC 1035 §3.1, §4.1.4): skipping a possibly
//! compressed name, checking an uncompressed one, and printing one for logs.

use std::fmt;

use super::WireError;

/// Longest label (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;
/// Longest name in wire form, length octets included (RFC 1035 §2.3.4).
pub(super) const MAX_NAME: usize = 255;
/// The two top bits that mark a compression pointer.
const POINTER: u8 = 0xc0;

/// Returns the offset just past the name starting at `pos`. A compression
/// pointer ends the name in place, so its target is not followed.
pub fn skip_name(packet: &[u8], mut pos: usize) -> Result<usize, WireError> {
    let start = pos;
    loop {
        let len = *packet.get(pos).ok_or(WireError::Short)?;
        match len & POINTER {
            0 if len == 0 => return Ok(pos + 1),
            0 => {
                pos += 1 + usize::from(len);
                if pos - start > MAX_NAME {
                    return Err(WireError::BadName);
                }
            }
            POINTER => {
                return if pos + 2 <= packet.len() {
                    Ok(pos + 2)
                } else {
                    Err(WireError::Short)
                };
            }
            // 0x40 and 0x80 are the retired extended label types (RFC 6891 §5).
            _ => return Err(WireError::BadName),
        }
    }
}

/// Checks the uncompressed name at `pos` and returns its length in octets,
/// the final zero included. Questions are never compressed by the clients
/// and servers dotstub talks to, and refusing pointers there keeps the
/// question a plain slice that can be copied and compared.
pub(super) fn uncompressed_name_len(packet: &[u8], pos: usize) -> Result<usize, WireError> {
    let mut offset = pos;
    loop {
        let len = usize::from(*packet.get(offset).ok_or(WireError::Short)?);
        if len > MAX_LABEL {
            return Err(WireError::BadName);
        }
        offset += 1 + len;
        if offset - pos > MAX_NAME {
            return Err(WireError::BadName);
        }
        if len == 0 {
            return Ok(offset - pos);
        }
    }
}

/// Displays an uncompressed wire-form name in presentation format, with
/// RFC 4343 escapes. Nothing is allocated until it is formatted, so it can
/// sit in a `debug!` field at no cost when debug logging is off.
pub struct NameDisplay<'a>(pub &'a [u8]);

impl fmt::Display for NameDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        if rest.first() == Some(&0) {
            return f.write_str(".");
        }
        while let Some((&len, tail)) = rest.split_first() {
            if len == 0 {
                break;
            }
            let (label, tail) = tail.split_at(usize::from(len).min(tail.len()));
            for &byte in label {
                match byte {
                    b'.' | b'\\' => write!(f, "\\{}", char::from(byte))?,
                    0x21..=0x7e => write!(f, "{}", char::from(byte))?,
                    _ => write!(f, "\\{byte:03}")?,
                }
            }
            f.write_str(".")?;
            rest = tail;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_plain_and_compressed_names() {
        let packet = b"\x03www\x07example\x03com\x00\x03foo\xc0\x00";
        assert_eq!(skip_name(packet, 0), Ok(17));
        assert_eq!(skip_name(packet, 17), Ok(23));
    }

    #[test]
    fn rejects_truncated_and_extended_labels() {
        assert_eq!(skip_name(b"\x03ww", 0), Err(WireError::Short));
        assert_eq!(skip_name(b"\x41abc\x00", 0), Err(WireError::BadName));
        assert_eq!(skip_name(b"\xc0", 0), Err(WireError::Short));
    }

    #[test]
    fn rejects_names_over_255_octets() {
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(60);
            long.extend_from_slice(&[b'a'; 60]);
        }
        long.push(0);
        assert_eq!(skip_name(&long, 0), Err(WireError::BadName));
        assert_eq!(uncompressed_name_len(&long, 0), Err(WireError::BadName));
    }

    #[test]
    fn uncompressed_names_refuse_pointers() {
        assert_eq!(uncompressed_name_len(b"\x03www\x00", 0), Ok(5));
        assert_eq!(uncompressed_name_len(b"\x00", 0), Ok(1));
        assert_eq!(
            uncompressed_name_len(b"\x03www\xc0\x00", 0),
            Err(WireError::BadName)
        );
    }

    #[test]
    fn displays_with_escapes() {
        assert_eq!(
            NameDisplay(b"\x03www\x07Example\x00").to_string(),
            "www.Example."
        );
        assert_eq!(NameDisplay(b"\x00").to_string(), ".");
        assert_eq!(
            NameDisplay(b"\x03a.b\x01\x07\x00").to_string(),
            "a\\.b.\\007."
        );
    }
}
