//! Our own credentials: certificate(s) per version, the private key, and the CA pool we trust.
//! Swapped whole on a reload; the engine reads it on every handshake.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use nebula_cert::cert::Certificate;
use nebula_cert::pool::CaPool;
use nebula_cert::{Curve, Version};
use zeroize::Zeroizing;

use crate::noise::{DhKind, StaticKeypair};
use crate::EngineError;

/// A trusted CA as the firewall names it: `ca_name` and `ca_sha` (hex fingerprint). Built once per
/// CA when the pool is loaded and shared by every tunnel whose peer that CA signed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CaLabel {
    pub name: String,
    pub sha: String,
}

/// What we present in handshakes and what we accept from peers.
#[derive(Clone)]
pub struct Pki {
    v1: Option<Arc<Certificate>>,
    v2: Option<Arc<Certificate>>,
    /// Handshake encodings (certificate without its public key), per version.
    v1_handshake: Vec<u8>,
    v2_handshake: Vec<u8>,
    /// Wiped on drop (and every clone of it).
    private_key: Zeroizing<Vec<u8>>,
    /// The Noise static keypair, derived once (deriving the public half is a scalar
    /// multiplication: too dear to repeat per handshake).
    keypair: StaticKeypair,
    curve: Curve,
    ca_pool: Arc<CaPool>,
    /// One label per trusted CA, by its hex fingerprint.
    ca_labels: Arc<HashMap<String, Arc<CaLabel>>>,
    initiating_version: Version,
    networks: Vec<IpNet>,
    unsafe_networks: Vec<IpNet>,
}

impl Pki {
    /// Builds our credentials from one or two certificates (at most one per version) sharing one
    /// key, and the CA pool. `initiating_version` defaults as Go's: v1 if we hold a v1 cert.
    pub fn new(
        certs: Vec<Certificate>,
        private_key: impl Into<Zeroizing<Vec<u8>>>,
        ca_pool: CaPool,
        initiating_version: Option<Version>,
    ) -> Result<Pki, EngineError> {
        // Wiped however we leave: an error return drops it too.
        let private_key: Zeroizing<Vec<u8>> = private_key.into();
        let mut v1 = None;
        let mut v2 = None;
        for c in certs {
            if c.is_ca() {
                return Err(EngineError::Config(
                    "pki.cert must not be a CA certificate".into(),
                ));
            }
            let slot = match c.version() {
                Version::V1 => &mut v1,
                Version::V2 => &mut v2,
            };
            if slot.is_some() {
                return Err(EngineError::Config(format!(
                    "pki.cert holds more than one {:?} certificate",
                    c.version()
                )));
            }
            *slot = Some(Arc::new(c));
        }
        let first = v1
            .as_ref()
            .or(v2.as_ref())
            .cloned()
            .ok_or_else(|| EngineError::Config("pki.cert holds no certificate".into()))?;
        let curve = first.curve();
        for c in v1.iter().chain(v2.iter()) {
            if c.curve() != curve {
                return Err(EngineError::Config(
                    "pki.cert: certificates use different curves".into(),
                ));
            }
            c.verify_private_key(curve, &private_key)
                .map_err(EngineError::KeyMismatch)?;
            if c.networks().is_empty() {
                return Err(EngineError::Config("pki.cert has no networks".into()));
            }
        }
        if let (Some(a), Some(b)) = (&v1, &v2) {
            if a.networks().first() != b.networks().first() {
                return Err(EngineError::Config(
                    "pki.cert: the v1 and v2 certificates must share their first network".into(),
                ));
            }
        }
        let default_version = if v1.is_some() {
            Version::V1
        } else {
            Version::V2
        };
        let initiating_version = initiating_version.unwrap_or(default_version);
        let held = match initiating_version {
            Version::V1 => v1.is_some(),
            Version::V2 => v2.is_some(),
        };
        if !held {
            return Err(EngineError::Config(format!(
                "pki.initiating_version is {initiating_version:?} but no such certificate is loaded"
            )));
        }
        let mut networks: Vec<IpNet> = Vec::new();
        let mut unsafe_networks: Vec<IpNet> = Vec::new();
        for c in v2.iter().chain(v1.iter()) {
            for n in c.networks() {
                if !networks.contains(n) {
                    networks.push(*n);
                }
            }
            for n in c.unsafe_networks() {
                if !unsafe_networks.contains(n) {
                    unsafe_networks.push(*n);
                }
            }
        }
        // Primary address first: the first network of the initiating certificate.
        if let Some(first_net) = first.networks().first() {
            networks.retain(|n| n != first_net);
            networks.insert(0, *first_net);
        }
        let dh = match curve {
            Curve::Curve25519 => DhKind::X25519,
            Curve::P256 => DhKind::P256,
        };
        let keypair = StaticKeypair::from_private(dh, &private_key).map_err(EngineError::Key)?;
        let ca_labels = ca_pool
            .cas()
            .map(|ca| {
                let sha = ca.fingerprint_hex();
                let label = CaLabel {
                    name: ca.name().to_string(),
                    sha: sha.clone(),
                };
                (sha, Arc::new(label))
            })
            .collect();
        Ok(Pki {
            keypair,
            v1_handshake: v1
                .as_ref()
                .map(|c| c.marshal_for_handshake())
                .unwrap_or_default(),
            v2_handshake: v2
                .as_ref()
                .map(|c| c.marshal_for_handshake())
                .unwrap_or_default(),
            v1,
            v2,
            private_key,
            curve,
            ca_pool: Arc::new(ca_pool),
            ca_labels: Arc::new(ca_labels),
            initiating_version,
            networks,
            unsafe_networks,
        })
    }

    pub fn cert(&self, version: Version) -> Option<&Arc<Certificate>> {
        match version {
            Version::V1 => self.v1.as_ref(),
            Version::V2 => self.v2.as_ref(),
        }
    }

    pub fn handshake_cert(&self, version: Version) -> &[u8] {
        match version {
            Version::V1 => &self.v1_handshake,
            Version::V2 => &self.v2_handshake,
        }
    }

    /// Our Noise static keypair.
    pub fn static_keypair(&self) -> &StaticKeypair {
        &self.keypair
    }

    pub fn private_key(&self) -> &[u8] {
        &self.private_key
    }

    pub fn public_key(&self) -> &[u8] {
        self.cert(self.initiating_version)
            .map(|c| c.public_key())
            .unwrap_or(&[])
    }

    pub fn curve(&self) -> Curve {
        self.curve
    }

    pub fn ca_pool(&self) -> &CaPool {
        &self.ca_pool
    }

    /// The label of the CA that issued `cert`: the pool's shared one, or (for an issuer the pool
    /// does not hold) an empty name with the certificate's issuer as `sha`.
    pub fn ca_label(&self, cert: &Certificate) -> Arc<CaLabel> {
        let issuer = cert.issuer_hex();
        match self.ca_labels.get(&issuer) {
            Some(label) => Arc::clone(label),
            None => Arc::new(CaLabel {
                name: String::new(),
                sha: issuer,
            }),
        }
    }

    pub fn initiating_version(&self) -> Version {
        self.initiating_version
    }

    /// Our vpn networks (address + prefix), primary first.
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    pub fn unsafe_networks(&self) -> &[IpNet] {
        &self.unsafe_networks
    }

    /// Our primary vpn address.
    pub fn vpn_addr(&self) -> IpAddr {
        self.networks
            .first()
            .map(|n| n.addr())
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    /// Is `ip` one of our own vpn addresses?
    pub fn is_my_addr(&self, ip: &IpAddr) -> bool {
        self.networks.iter().any(|n| n.addr() == *ip)
    }

    /// Is `ip` inside one of our vpn networks?
    pub fn in_my_networks(&self, ip: &IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// The certificate version to answer a peer that used `peer_version`: theirs if we hold it.
    pub fn answer_version(&self, peer_version: Version) -> Version {
        if self.cert(peer_version).is_some() {
            peer_version
        } else {
            self.initiating_version
        }
    }
}

#[cfg(test)]
mod tests {
    use zeroize::ZeroizeOnDrop;

    use crate::sim::TestCa;
    use nebula_cert::{Curve, Version};

    fn wiped_on_drop<T: ZeroizeOnDrop>(_: &T) {}

    /// Fails to compile if the private key or the Noise keypair stop wiping themselves.
    #[test]
    fn our_private_key_is_held_in_types_that_wipe_on_drop() {
        let pki = TestCa::new("ca", Curve::Curve25519, Version::V1).pki("h", "10.1.0.1/16");
        wiped_on_drop(&pki.private_key);
        wiped_on_drop(&pki.keypair);
        assert_eq!(pki.private_key().len(), crate::noise::PRIVATE_KEY_LEN);
    }
}
