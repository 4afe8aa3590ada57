//! Certificates made in the test: a certificate authority of its own and the server and
//! client certificates it issues, as PEM text or as files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate authority of this test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// A certificate (PEM) and its key (PEM) for `common_name` (none if `None`) and
    /// these DNS/IP names.
    pub fn issue_pem(&self, common_name: Option<&str>, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        // rcgen puts a default CN in an empty name; a SAN-only certificate has none.
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(common_name) = common_name {
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
        }
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (certificate.pem(), key.serialize_pem())
    }

    /// `issue_pem` for `common_name`.
    pub fn issue(&self, common_name: &str, names: &[&str]) -> (String, String) {
        self.issue_pem(Some(common_name), names)
    }

    /// `issue_pem` written as `stem.pem` and `stem.key` in `dir`.
    pub fn issue_files(
        &self,
        dir: &Path,
        stem: &str,
        common_name: Option<&str>,
        names: &[&str],
    ) -> (PathBuf, PathBuf) {
        write_pair(dir, stem, self.issue_pem(common_name, names))
    }

    /// The CA's own certificate, written to `path`.
    pub fn write_to(&self, path: &Path) {
        std::fs::write(path, self.issuer.pem()).unwrap();
    }

    /// The CA's own certificate, written as `file` in `dir`.
    pub fn write_in(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        self.write_to(&path);
        path
    }
}

/// Certificate and key files in `dir` named after `stem`.
pub fn write_pair(dir: &Path, stem: &str, (cert, key): (String, String)) -> (PathBuf, PathBuf) {
    let cert_file = dir.join(format!("{stem}.pem"));
    let key_file = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    (cert_file, key_file)
}
