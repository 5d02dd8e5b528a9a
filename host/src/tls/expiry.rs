//! A certificate's `notAfter`, read from its DER without a full X.509
//! parser: the walk goes `Certificate` → `tbsCertificate` → past version,
//! serial, signature and issuer → `validity`. For the
//! `certificate_expiry_timestamp_seconds` metric (`metrics/prometheus.rs`);
//! rustls has already parsed and accepted the certificate.

/// DER tags met on the way.
const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const EXPLICIT_0: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Unix seconds of the certificate's `notAfter`, or `None` when the DER is
/// not shaped like a certificate.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (cert, _) = element(der, SEQUENCE)?;
    let (mut tbs, _) = element(cert, SEQUENCE)?;
    if tbs.first() == Some(&EXPLICIT_0) {
        tbs = element(tbs, EXPLICIT_0)?.1;
    }
    let rest = element(tbs, INTEGER)?.1; // serial
    let rest = element(rest, SEQUENCE)?.1; // signature algorithm
    let rest = element(rest, SEQUENCE)?.1; // issuer
    let (validity, _) = element(rest, SEQUENCE)?;
    let after = skip(validity)?; // notBefore
    let tag = *after.first()?;
    let (time, _) = element(after, tag)?;
    parse_time(tag, time)
}

/// The contents of the element at the start of `der` if its tag is `tag`,
/// and what follows it.
fn element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = der.split_first()?;
    if first != tag {
        return None;
    }
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// What follows the element at the start of `der`, whatever its tag.
fn skip(der: &[u8]) -> Option<&[u8]> {
    let tag = *der.first()?;
    element(der, tag).map(|(_, rest)| rest)
}

/// `YYMMDDHHMMSSZ` (UTCTime, 1950–2049) or `YYYYMMDDHHMMSSZ`.
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let num = |s: &str| s.parse::<i64>().ok();
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 12 => {
            let yy = num(&text[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 14 => (num(&text[..4])?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| num(rest.get(i..i + 2)?);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};

    fn cert_expiring(year: i32, month: u8, day: u8) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["x.example".to_owned()]).unwrap();
        params.not_after = date_time_ymd(year, month, day);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_not_after_in_utc_time_and_generalized_time() {
        // 2031-05-17T00:00:00Z (UTCTime) and 2050-01-01 (GeneralizedTime).
        assert_eq!(not_after(&cert_expiring(2031, 5, 17)), Some(1_936_742_400));
        assert_eq!(not_after(&cert_expiring(2050, 1, 1)), Some(2_524_608_000));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x02, 0x01]), None);
        let mut der = cert_expiring(2031, 5, 17);
        der.truncate(40);
        assert_eq!(not_after(&der), None);
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
    }
}
