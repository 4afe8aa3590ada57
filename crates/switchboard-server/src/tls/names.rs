//! The names a client certificate carries: its subject's common name (CN) and its
//! subject alternative names of the DNS and email kinds. Read with a small DER walker:
//! the certificate has already been verified by rustls, only these fields are needed,
//! and a full X.509 parser would be a large dependency for them.

/// The subject CN, then the DNS names and email addresses of the subject alternative
/// names, in the certificate's order. A certificate that cannot be read yields what was
/// read before the fault (nothing, usually): names are an addition to a verified chain,
/// never a reason to refuse it.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let _ = read_names(der, &mut names);
    names
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;
/// `[0]` constructed: the version of a TBSCertificate.
const VERSION: u8 = 0xa0;
/// `[3]` constructed: the extensions of a TBSCertificate.
const EXTENSIONS: u8 = 0xa3;
/// GeneralName `[1]` rfc822Name and `[2]` dNSName (implicit IA5String).
const RFC822_NAME: u8 = 0x81;
const DNS_NAME: u8 = 0x82;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

fn read_names(der: &[u8], names: &mut Vec<String>) -> Option<()> {
    let (certificate, _) = Der::new(der).expect(SEQUENCE)?;
    let mut certificate = Der::new(certificate);
    let (tbs, _) = certificate.expect(SEQUENCE)?;
    let mut tbs = Der::new(tbs);
    if tbs.peek() == Some(VERSION) {
        tbs.next()?;
    }
    // serialNumber, signature, issuer, validity, then the subject.
    for _ in 0..4 {
        tbs.next()?;
    }
    let (subject, _) = tbs.expect(SEQUENCE)?;
    read_common_names(subject, names)?;
    tbs.next()?; // subjectPublicKeyInfo
    while let Some((tag, content)) = tbs.next() {
        if tag == EXTENSIONS {
            let (extensions, _) = Der::new(content).expect(SEQUENCE)?;
            read_alt_names(extensions, names)?;
        }
    }
    Some(())
}

/// Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }
fn read_common_names(subject: &[u8], names: &mut Vec<String>) -> Option<()> {
    let mut rdns = Der::new(subject);
    while let Some((tag, rdn)) = rdns.next() {
        if tag != SET {
            return None;
        }
        let mut attributes = Der::new(rdn);
        while let Some((_, attribute)) = attributes.next() {
            let mut attribute = Der::new(attribute);
            let (kind, _) = attribute.expect(OID)?;
            let (_, value) = attribute.next()?;
            if kind == COMMON_NAME
                && let Ok(text) = std::str::from_utf8(value)
            {
                names.push(text.to_owned());
            }
        }
    }
    Some(())
}

/// Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET
/// STRING }; the SAN's value is a SEQUENCE OF GeneralName.
fn read_alt_names(extensions: &[u8], names: &mut Vec<String>) -> Option<()> {
    let mut extensions = Der::new(extensions);
    while let Some((_, extension)) = extensions.next() {
        let mut extension = Der::new(extension);
        let (id, _) = extension.expect(OID)?;
        if id != SUBJECT_ALT_NAME {
            continue;
        }
        if extension.peek() == Some(BOOLEAN) {
            extension.next()?;
        }
        let (value, _) = extension.expect(OCTET_STRING)?;
        let (general_names, _) = Der::new(value).expect(SEQUENCE)?;
        let mut general_names = Der::new(general_names);
        while let Some((tag, name)) = general_names.next() {
            if matches!(tag, DNS_NAME | RFC822_NAME)
                && let Ok(text) = std::str::from_utf8(name)
            {
                names.push(text.to_owned());
            }
        }
    }
    Some(())
}

/// A cursor over DER elements (tag, definite length, content).
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element's tag and content.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |len, &byte| (len << 8) | usize::from(byte))
        };
        if rest.len() < len {
            return None;
        }
        let (content, after) = rest.split_at(len);
        self.rest = after;
        Some((tag, content))
    }

    /// The next element, which must have this tag; its content and what follows it.
    fn expect(&mut self, tag: u8) -> Option<(&'a [u8], &'a [u8])> {
        match self.next()? {
            (found, content) if found == tag => Some((content, self.rest)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::certificate_names;

    #[test]
    fn the_common_name_and_the_dns_and_email_alt_names_are_read() {
        let mut params =
            rcgen::CertificateParams::new(vec!["client.example.com".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            "alice@example.com".try_into().unwrap(),
        ));
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_names(certificate.der()),
            ["alice", "client.example.com", "alice@example.com"]
        );
    }

    #[test]
    fn garbage_yields_no_names() {
        assert!(certificate_names(b"").is_empty());
        assert!(certificate_names(&[0x30, 0x82, 0xff]).is_empty());
        assert!(certificate_names(&[0x30, 0x03, 0x30, 0x01]).is_empty());
    }
}
