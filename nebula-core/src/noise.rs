//! Nebula's Noise handshake, sans-IO: `Noise_IX_{25519|P256}_{AESGCM|ChaChaPoly}_SHA256`, empty prologue,
//! no PSK; builds and reads the two IX messages and hands out the raw split keys for the data plane.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::aead::{AeadError, KeyUse, Session, SessionCipher, KEY_LEN, TAG_LEN};

pub use crate::aead::CipherKind;

/// Noise's limit on one handshake payload (flynn/noise `MaxMsgLen`).
pub const MAX_PAYLOAD_LEN: usize = 65535;

/// Length of a private key (both curves use 32-byte scalars).
pub const PRIVATE_KEY_LEN: usize = 32;

const HASH_LEN: usize = 32;

/// The Diffie-Hellman function, chosen by the curve of the node's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhKind {
    /// X25519 (`25519`): 32-byte public keys.
    X25519,
    /// NIST P-256 (`P256`, Nebula 1.7+): 65-byte uncompressed SEC1 public keys; the shared secret is the
    /// 32-byte x-coordinate.
    P256,
}

impl DhKind {
    /// Length of a public key on the wire (Noise `DHLEN` as flynn/noise uses it).
    pub fn public_key_len(self) -> usize {
        match self {
            DhKind::X25519 => 32,
            DhKind::P256 => 65,
        }
    }

    /// The DH name inside the Noise protocol name.
    pub fn noise_name(self) -> &'static str {
        match self {
            DhKind::X25519 => "25519",
            DhKind::P256 => "P256",
        }
    }
}

/// The full Noise protocol name, e.g. `Noise_IX_25519_AESGCM_SHA256`.
pub fn protocol_name(dh: DhKind, cipher: CipherKind) -> String {
    format!(
        "Noise_IX_{}_{}_SHA256",
        dh.noise_name(),
        cipher.noise_name()
    )
}

/// Errors of the Noise handshake layer. Every malformed or forged message maps to one of these;
/// nothing here panics on network input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoiseError {
    /// The message is shorter than the keys (and tags) the IX pattern requires at this step.
    #[error("handshake message too short: need at least {needed} bytes, got {got}")]
    ShortMessage {
        /// Minimum length for this message.
        needed: usize,
        /// Length received.
        got: usize,
    },
    /// A public key is not a valid point for the curve (wrong length or encoding, off the curve).
    #[error("invalid public key")]
    InvalidPublicKey,
    /// A private key has the wrong length or is not a valid scalar for the curve.
    #[error("invalid private key")]
    InvalidPrivateKey,
    /// The Diffie-Hellman result is all zeros (an X25519 low-order point was supplied).
    #[error("non-contributory Diffie-Hellman result")]
    WeakSharedSecret,
    /// An encrypted field failed authentication: tampering, wrong keys, or a peer using another
    /// cipher or curve.
    #[error("handshake decryption failed")]
    Decrypt,
    /// The private key does not belong to the given public key (certificate).
    #[error("private key does not match the public key")]
    KeyMismatch,
    /// A call out of order: message 1 written twice, or message 2 read before message 1 was written.
    #[error("handshake call out of order")]
    WrongState,
    /// The payload is longer than Noise allows (65535 bytes).
    #[error("handshake payload too long")]
    PayloadTooLong,
    /// A cryptographic primitive rejected an input of a length it always accepts (should not happen).
    #[error("internal cryptographic failure")]
    Internal,
}

impl From<AeadError> for NoiseError {
    fn from(e: AeadError) -> Self {
        match e {
            AeadError::Authentication | AeadError::ShortBuffer | AeadError::Replay => {
                NoiseError::Decrypt
            }
            AeadError::InvalidKey | AeadError::CounterExhausted | AeadError::Seal => {
                NoiseError::Internal
            }
        }
    }
}

/// An X25519 private key. The agreement runs in aws-lc (its assembly ladder is about twice as fast
/// as curve25519-dalek's portable one here, and handshakes are mostly X25519); the dalek secret
/// keeps the raw scalar and is the fallback should aws-lc refuse a key.
#[derive(Clone)]
struct X25519Secret {
    secret: x25519_dalek::StaticSecret,
    /// aws-lc's form of `secret` (its public key computed once, when it is made).
    fast: Option<std::sync::Arc<aws_lc_rs::agreement::PrivateKey>>,
}

impl X25519Secret {
    fn new(secret: x25519_dalek::StaticSecret) -> X25519Secret {
        let fast = aws_lc_rs::agreement::PrivateKey::from_private_key(
            &aws_lc_rs::agreement::X25519,
            secret.as_bytes(),
        )
        .ok()
        .map(std::sync::Arc::new);
        X25519Secret { secret, fast }
    }

    fn public_bytes(&self) -> Vec<u8> {
        if let Some(p) = self.fast.as_ref().and_then(|k| k.compute_public_key().ok()) {
            return p.as_ref().to_vec();
        }
        x25519_dalek::PublicKey::from(&self.secret)
            .as_bytes()
            .to_vec()
    }

    fn diffie_hellman(
        &self,
        remote: &x25519_dalek::PublicKey,
    ) -> Result<Zeroizing<[u8; 32]>, NoiseError> {
        if let Some(k) = &self.fast {
            let peer = aws_lc_rs::agreement::UnparsedPublicKey::new(
                &aws_lc_rs::agreement::X25519,
                remote.as_bytes(),
            );
            // aws-lc refuses an all-zero result (a low-order point), as Noise requires.
            return aws_lc_rs::agreement::agree(k, peer, NoiseError::WeakSharedSecret, |shared| {
                let mut out = Zeroizing::new([0u8; 32]);
                if shared.len() != out.len() {
                    return Err(NoiseError::WeakSharedSecret);
                }
                out.copy_from_slice(shared);
                Ok(out)
            });
        }
        let shared = self.secret.diffie_hellman(remote);
        if !shared.was_contributory() {
            return Err(NoiseError::WeakSharedSecret);
        }
        // `SharedSecret` wipes itself on drop; the copy we hand out does too.
        Ok(Zeroizing::new(shared.to_bytes()))
    }
}

#[derive(Clone)]
enum PrivateKey {
    X25519(X25519Secret),
    P256(p256::SecretKey),
}

impl PrivateKey {
    fn generate<R: CryptoRngCore + ?Sized>(dh: DhKind, rng: &mut R) -> Self {
        let mut rng = rng;
        match dh {
            DhKind::X25519 => PrivateKey::X25519(X25519Secret::new(
                x25519_dalek::StaticSecret::random_from_rng(&mut rng),
            )),
            DhKind::P256 => PrivateKey::P256(p256::SecretKey::random(&mut rng)),
        }
    }

    fn from_bytes(dh: DhKind, bytes: &[u8]) -> Result<Self, NoiseError> {
        let raw: Zeroizing<[u8; PRIVATE_KEY_LEN]> = Zeroizing::new(
            bytes
                .try_into()
                .map_err(|_| NoiseError::InvalidPrivateKey)?,
        );
        match dh {
            DhKind::X25519 => Ok(PrivateKey::X25519(X25519Secret::new(
                x25519_dalek::StaticSecret::from(*raw),
            ))),
            DhKind::P256 => p256::SecretKey::from_bytes(&(*raw).into())
                .map(PrivateKey::P256)
                .map_err(|_| NoiseError::InvalidPrivateKey),
        }
    }

    fn dh_kind(&self) -> DhKind {
        match self {
            PrivateKey::X25519(_) => DhKind::X25519,
            PrivateKey::P256(_) => DhKind::P256,
        }
    }

    fn public_bytes(&self) -> Vec<u8> {
        match self {
            PrivateKey::X25519(s) => s.public_bytes(),
            PrivateKey::P256(s) => s.public_key().to_encoded_point(false).as_bytes().to_vec(),
        }
    }

    fn to_bytes(&self) -> Zeroizing<[u8; PRIVATE_KEY_LEN]> {
        match self {
            PrivateKey::X25519(s) => Zeroizing::new(s.secret.to_bytes()),
            PrivateKey::P256(s) => {
                let mut field = s.to_bytes();
                let out = Zeroizing::new(field.into());
                field.zeroize();
                out
            }
        }
    }

    fn diffie_hellman(&self, remote: &RemotePublic) -> Result<Zeroizing<[u8; 32]>, NoiseError> {
        match (self, remote) {
            (PrivateKey::X25519(s), RemotePublic::X25519(p)) => s.diffie_hellman(p),
            (PrivateKey::P256(s), RemotePublic::P256(p)) => {
                let shared = p256::ecdh::diffie_hellman(s.to_nonzero_scalar(), p.as_affine());
                Ok(Zeroizing::new((*shared.raw_secret_bytes()).into()))
            }
            _ => Err(NoiseError::InvalidPublicKey),
        }
    }
}

#[derive(Clone)]
enum RemotePublic {
    X25519(x25519_dalek::PublicKey),
    P256(p256::PublicKey),
}

impl RemotePublic {
    fn parse(dh: DhKind, bytes: &[u8]) -> Result<Self, NoiseError> {
        match dh {
            DhKind::X25519 => {
                let raw: [u8; 32] = bytes.try_into().map_err(|_| NoiseError::InvalidPublicKey)?;
                Ok(RemotePublic::X25519(x25519_dalek::PublicKey::from(raw)))
            }
            DhKind::P256 => {
                if bytes.len() != 65 || bytes.first() != Some(&0x04) {
                    return Err(NoiseError::InvalidPublicKey);
                }
                p256::PublicKey::from_sec1_bytes(bytes)
                    .map(RemotePublic::P256)
                    .map_err(|_| NoiseError::InvalidPublicKey)
            }
        }
    }
}

/// A node's long-term Noise key pair (`pki.key`; the public half is the certificate's public key).
#[derive(Clone)]
pub struct StaticKeypair {
    private: PrivateKey,
    public: Vec<u8>,
}

/// The private half wipes itself: `x25519_dalek::StaticSecret` zeroizes in its `Drop` (its
/// `zeroize` feature) and `p256::SecretKey` is `ZeroizeOnDrop`; aws-lc's copy of an X25519 key is cleansed by aws-lc
/// when it frees the key. The public half is no secret.
impl ZeroizeOnDrop for StaticKeypair {}

impl std::fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeypair")
            .field("dh", &self.dh())
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl StaticKeypair {
    /// Loads a raw 32-byte private key (X25519 scalar, or P-256 big-endian scalar) and derives the public key.
    pub fn from_private(dh: DhKind, private: &[u8]) -> Result<Self, NoiseError> {
        let private = PrivateKey::from_bytes(dh, private)?;
        let public = private.public_bytes();
        Ok(Self { private, public })
    }

    /// Loads a raw private key and checks it against `public` (the certificate's public key). An empty
    /// `public` skips the check and uses the derived key.
    pub fn new(dh: DhKind, private: &[u8], public: &[u8]) -> Result<Self, NoiseError> {
        let kp = Self::from_private(dh, private)?;
        if !public.is_empty() && public != kp.public.as_slice() {
            return Err(NoiseError::KeyMismatch);
        }
        Ok(kp)
    }

    /// Generates a fresh key pair.
    pub fn generate<R: CryptoRngCore + ?Sized>(dh: DhKind, rng: &mut R) -> Self {
        let private = PrivateKey::generate(dh, rng);
        let public = private.public_bytes();
        Self { private, public }
    }

    /// The curve of this key pair.
    pub fn dh(&self) -> DhKind {
        self.private.dh_kind()
    }

    /// The public key as sent in handshakes (32 bytes for X25519, 65 for P-256).
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// The raw 32-byte private key (wiped when the copy is dropped).
    pub fn private_bytes(&self) -> Zeroizing<[u8; PRIVATE_KEY_LEN]> {
        self.private.to_bytes()
    }
}

/// The raw keys from Noise `Split`: the data plane keeps only these and supplies its own nonces.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Cipher negotiated by the handshake (same on both sides).
    pub cipher: CipherKind,
    /// Split key 1: encrypts initiator → responder traffic.
    pub initiator_to_responder: [u8; KEY_LEN],
    /// Split key 2: encrypts responder → initiator traffic.
    pub responder_to_initiator: [u8; KEY_LEN],
}

impl Zeroize for SessionKeys {
    fn zeroize(&mut self) {
        self.initiator_to_responder.zeroize();
        self.responder_to_initiator.zeroize();
    }
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for SessionKeys {}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// The (send, receive) ciphers for our side of the tunnel.
    pub fn into_ciphers(
        self,
        is_initiator: bool,
    ) -> Result<(SessionCipher, SessionCipher), AeadError> {
        let i2r = SessionCipher::new(self.cipher, &self.initiator_to_responder)?;
        let r2i = SessionCipher::new(self.cipher, &self.responder_to_initiator)?;
        Ok(if is_initiator { (i2r, r2i) } else { (r2i, i2r) })
    }

    /// A ready [`Session`] (send counter 2, replay window with 1 and 2 marked) for our side.
    pub fn into_session(self, is_initiator: bool) -> Result<Session, AeadError> {
        let (send, recv) = self.into_ciphers(is_initiator)?;
        Ok(Session::new(send, recv))
    }
}

/// HKDF as Noise defines it with two outputs (RFC 5869 with salt = chaining key, empty info).
type Secret32 = Zeroizing<[u8; HASH_LEN]>;

fn hkdf2(chaining_key: &[u8; HASH_LEN], ikm: &[u8]) -> Result<(Secret32, Secret32), NoiseError> {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(chaining_key), ikm);
    let mut okm = Zeroizing::new([0u8; 2 * HASH_LEN]);
    hk.expand(&[], okm.as_mut_slice())
        .map_err(|_| NoiseError::Internal)?;
    let mut a = Zeroizing::new([0u8; HASH_LEN]);
    let mut b = Zeroizing::new([0u8; HASH_LEN]);
    a.copy_from_slice(&okm[..HASH_LEN]);
    b.copy_from_slice(&okm[HASH_LEN..]);
    Ok((a, b))
}

/// Noise SymmetricState + CipherState for the handshake.
#[derive(Clone)]
struct SymmetricState {
    cipher: CipherKind,
    /// The chaining key: secret (every later key derives from it), wiped on drop.
    ck: Secret32,
    h: [u8; HASH_LEN],
    k: Option<SessionCipher>,
    n: u64,
}

impl SymmetricState {
    fn new(dh: DhKind, cipher: CipherKind) -> Self {
        let name = protocol_name(dh, cipher);
        let mut h = [0u8; HASH_LEN];
        if name.len() <= HASH_LEN {
            h[..name.len()].copy_from_slice(name.as_bytes());
        } else {
            h = Sha256::digest(name.as_bytes()).into();
        }
        let mut s = Self {
            cipher,
            ck: Zeroizing::new(h),
            h,
            k: None,
            n: 0,
        };
        s.mix_hash(&[]); // empty prologue
        s
    }

    fn mix_hash(&mut self, data: &[u8]) {
        let mut d = Sha256::new();
        d.update(self.h);
        d.update(data);
        self.h = d.finalize().into();
    }

    fn mix_key(&mut self, ikm: &[u8]) -> Result<(), NoiseError> {
        let (ck, k) = hkdf2(&self.ck, ikm)?;
        self.ck = ck;
        self.k = Some(SessionCipher::new(self.cipher, &k)?);
        self.n = 0;
        Ok(())
    }

    fn encrypt_and_hash(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), NoiseError> {
        let start = out.len();
        out.extend_from_slice(plaintext);
        if let Some(k) = &self.k {
            let body = out.get_mut(start..).ok_or(NoiseError::Internal)?;
            let tag = k.seal_unchecked(KeyUse::Control, self.n, &self.h, body)?;
            out.extend_from_slice(&tag);
            self.n += 1;
        }
        let written = out.get(start..).ok_or(NoiseError::Internal)?;
        let mut d = Sha256::new();
        d.update(self.h);
        d.update(written);
        self.h = d.finalize().into();
        Ok(())
    }

    fn decrypt_and_hash(&mut self, data: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let plaintext = match &self.k {
            None => data.to_vec(),
            Some(k) => {
                let mut buf = data.to_vec();
                let len = k
                    .open_in_place(KeyUse::Control, self.n, &self.h, &mut buf)
                    .map_err(|_| NoiseError::Decrypt)?
                    .len();
                buf.truncate(len);
                self.n += 1;
                buf
            }
        };
        self.mix_hash(data);
        Ok(plaintext)
    }

    fn split(&self) -> Result<SessionKeys, NoiseError> {
        let (k1, k2) = hkdf2(&self.ck, &[])?;
        Ok(SessionKeys {
            cipher: self.cipher,
            initiator_to_responder: *k1,
            responder_to_initiator: *k2,
        })
    }
}

fn check_payload(payload: &[u8]) -> Result<(), NoiseError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(NoiseError::PayloadTooLong);
    }
    Ok(())
}

enum InitiatorStage {
    /// Message 1 not written yet.
    Fresh,
    /// Message 1 written with this ephemeral key; waiting for message 2.
    Sent(PrivateKey),
}

/// Our side of a handshake we start. Write message 1 once, then feed candidate message 2s to
/// [`read_message_2`](Self::read_message_2): reading never changes the state, so a forged or corrupt
/// message 2 can be ignored and the attempt kept alive.
pub struct Initiator {
    cipher: CipherKind,
    sym: SymmetricState,
    s: StaticKeypair,
    stage: InitiatorStage,
}

impl Initiator {
    /// Prepares a handshake with our static key; the DH function is the key's curve.
    pub fn new(cipher: CipherKind, static_keypair: StaticKeypair) -> Self {
        Self {
            cipher,
            sym: SymmetricState::new(static_keypair.dh(), cipher),
            s: static_keypair,
            stage: InitiatorStage::Fresh,
        }
    }

    /// The cipher of this handshake.
    pub fn cipher(&self) -> CipherKind {
        self.cipher
    }

    /// The curve of this handshake.
    pub fn dh(&self) -> DhKind {
        self.s.dh()
    }

    /// Builds IX message 1 (`-> e, s`) with a fresh ephemeral key: `e || s || payload`, all in clear.
    /// Cache the bytes and resend them unchanged on retries; calling this twice is `WrongState`.
    pub fn write_message_1<R: CryptoRngCore + ?Sized>(
        &mut self,
        payload: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, NoiseError> {
        if !matches!(self.stage, InitiatorStage::Fresh) {
            return Err(NoiseError::WrongState);
        }
        check_payload(payload)?;
        let e = PrivateKey::generate(self.s.dh(), rng);
        let e_pub = e.public_bytes();
        let mut sym = self.sym.clone();
        let mut out = Vec::with_capacity(e_pub.len() + self.s.public.len() + payload.len());
        out.extend_from_slice(&e_pub);
        sym.mix_hash(&e_pub);
        sym.encrypt_and_hash(&self.s.public, &mut out)?;
        sym.encrypt_and_hash(payload, &mut out)?;
        self.sym = sym;
        self.stage = InitiatorStage::Sent(e);
        Ok(out)
    }

    /// Reads IX message 2 (`<- e, ee, se, s, es`) and returns (payload, responder's static key, split
    /// keys). Leaves `self` untouched, so a failure can simply be ignored.
    pub fn read_message_2(
        &self,
        msg: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>, SessionKeys), NoiseError> {
        let InitiatorStage::Sent(e) = &self.stage else {
            return Err(NoiseError::WrongState);
        };
        let dh = self.s.dh();
        let klen = dh.public_key_len();
        let needed = klen + (klen + TAG_LEN) + TAG_LEN;
        if msg.len() < needed {
            return Err(NoiseError::ShortMessage {
                needed,
                got: msg.len(),
            });
        }
        let (re_bytes, rest) = msg.split_at(klen);
        let (enc_rs, enc_payload) = rest.split_at(klen + TAG_LEN);

        let mut sym = self.sym.clone();
        let re = RemotePublic::parse(dh, re_bytes)?;
        sym.mix_hash(re_bytes);
        sym.mix_key(e.diffie_hellman(&re)?.as_slice())?; // ee
        sym.mix_key(self.s.private.diffie_hellman(&re)?.as_slice())?; // se
        let rs_bytes = sym.decrypt_and_hash(enc_rs)?;
        let rs = RemotePublic::parse(dh, &rs_bytes)?;
        sym.mix_key(e.diffie_hellman(&rs)?.as_slice())?; // es
        let payload = sym.decrypt_and_hash(enc_payload)?;
        Ok((payload, rs_bytes, sym.split()?))
    }
}

/// Our side of a handshake the peer started, after a valid message 1; answer with message 2.
pub struct Responder {
    sym: SymmetricState,
    s: StaticKeypair,
    re: RemotePublic,
    rs: RemotePublic,
}

impl Responder {
    /// Reads IX message 1 with our static key (its curve is the DH function) and returns
    /// (payload, initiator's static key, responder ready to write message 2).
    pub fn read_message_1(
        cipher: CipherKind,
        static_keypair: StaticKeypair,
        msg: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>, Responder), NoiseError> {
        let dh = static_keypair.dh();
        let klen = dh.public_key_len();
        let needed = 2 * klen;
        if msg.len() < needed {
            return Err(NoiseError::ShortMessage {
                needed,
                got: msg.len(),
            });
        }
        let (re_bytes, rest) = msg.split_at(klen);
        let (rs_bytes, payload) = rest.split_at(klen);
        let re = RemotePublic::parse(dh, re_bytes)?;
        let mut sym = SymmetricState::new(dh, cipher);
        sym.mix_hash(re_bytes);
        let rs_bytes = sym.decrypt_and_hash(rs_bytes)?;
        let rs = RemotePublic::parse(dh, &rs_bytes)?;
        let payload = sym.decrypt_and_hash(payload)?;
        Ok((
            payload,
            rs_bytes,
            Responder {
                sym,
                s: static_keypair,
                re,
                rs,
            },
        ))
    }

    /// The cipher of this handshake.
    pub fn cipher(&self) -> CipherKind {
        self.sym.cipher
    }

    /// Builds IX message 2 (`e || enc(s) || enc(payload)`) with a fresh ephemeral key, and the split keys.
    pub fn write_message_2<R: CryptoRngCore + ?Sized>(
        self,
        payload: &[u8],
        rng: &mut R,
    ) -> Result<(Vec<u8>, SessionKeys), NoiseError> {
        check_payload(payload)?;
        let Self { mut sym, s, re, rs } = self;
        let e = PrivateKey::generate(s.dh(), rng);
        let e_pub = e.public_bytes();
        let mut out =
            Vec::with_capacity(e_pub.len() + s.public.len() + payload.len() + 2 * TAG_LEN);
        out.extend_from_slice(&e_pub);
        sym.mix_hash(&e_pub);
        sym.mix_key(e.diffie_hellman(&re)?.as_slice())?; // ee
        sym.mix_key(e.diffie_hellman(&rs)?.as_slice())?; // se
        sym.encrypt_and_hash(&s.public, &mut out)?;
        sym.mix_key(s.private.diffie_hellman(&re)?.as_slice())?; // es
        sym.encrypt_and_hash(payload, &mut out)?;
        Ok((out, sym.split()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const CIPHERS: [CipherKind; 2] = [CipherKind::AesGcm, CipherKind::ChaChaPoly];
    const CURVES: [DhKind; 2] = [DhKind::X25519, DhKind::P256];

    fn snow_params(cipher: CipherKind) -> snow::params::NoiseParams {
        protocol_name(DhKind::X25519, cipher).parse().unwrap()
    }

    /// Both sides of a successful handshake: (m1, m2, initiator result, responder keys).
    struct Transcript {
        m1: Vec<u8>,
        m2: Vec<u8>,
        init: Initiator,
        i_key: StaticKeypair,
        r_key: StaticKeypair,
        r_keys: SessionKeys,
    }

    fn handshake(
        dh: DhKind,
        cipher: CipherKind,
        rng: &mut StdRng,
        p1: &[u8],
        p2: &[u8],
    ) -> Transcript {
        let i_key = StaticKeypair::generate(dh, rng);
        let r_key = StaticKeypair::generate(dh, rng);
        let mut init = Initiator::new(cipher, i_key.clone());
        let m1 = init.write_message_1(p1, rng).unwrap();
        let (got_p1, got_rs, resp) = Responder::read_message_1(cipher, r_key.clone(), &m1).unwrap();
        assert_eq!(got_p1, p1);
        assert_eq!(got_rs, i_key.public());
        let (m2, r_keys) = resp.write_message_2(p2, rng).unwrap();
        Transcript {
            m1,
            m2,
            init,
            i_key,
            r_key,
            r_keys,
        }
    }

    #[test]
    fn protocol_names() {
        assert_eq!(
            protocol_name(DhKind::X25519, CipherKind::AesGcm),
            "Noise_IX_25519_AESGCM_SHA256"
        );
        assert_eq!(
            protocol_name(DhKind::X25519, CipherKind::ChaChaPoly),
            "Noise_IX_25519_ChaChaPoly_SHA256"
        );
        assert_eq!(
            protocol_name(DhKind::P256, CipherKind::AesGcm),
            "Noise_IX_P256_AESGCM_SHA256"
        );
        assert_eq!(
            protocol_name(DhKind::P256, CipherKind::ChaChaPoly),
            "Noise_IX_P256_ChaChaPoly_SHA256"
        );
    }

    #[test]
    fn our_initiator_snow_responder() {
        let mut rng = StdRng::seed_from_u64(1);
        for cipher in CIPHERS {
            let ours = StaticKeypair::generate(DhKind::X25519, &mut rng);
            let theirs = StaticKeypair::generate(DhKind::X25519, &mut rng);
            let their_priv = theirs.private_bytes();
            let mut snow_r = snow::Builder::new(snow_params(cipher))
                .local_private_key(their_priv.as_slice())
                .build_responder()
                .unwrap();

            let mut init = Initiator::new(cipher, ours.clone());
            let m1 = init.write_message_1(b"hello from I", &mut rng).unwrap();
            assert_eq!(m1.len(), 32 + 32 + 12);
            let mut buf = vec![0u8; 1024];
            let n = snow_r.read_message(&m1, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello from I");
            assert_eq!(snow_r.get_remote_static().unwrap(), ours.public());

            let mut m2 = vec![0u8; 1024];
            let n = snow_r.write_message(b"reply from R", &mut m2).unwrap();
            m2.truncate(n);
            assert_eq!(m2.len(), 32 + 48 + 12 + 16);
            let (payload, rs, keys) = init.read_message_2(&m2).unwrap();
            assert_eq!(payload, b"reply from R");
            assert_eq!(rs, theirs.public());
            let (k1, k2) = snow_r.dangerously_get_raw_split();
            assert_eq!(keys.initiator_to_responder, k1, "{cipher:?}");
            assert_eq!(keys.responder_to_initiator, k2, "{cipher:?}");
            assert_eq!(keys.cipher, cipher);
        }
    }

    #[test]
    fn snow_initiator_our_responder() {
        let mut rng = StdRng::seed_from_u64(2);
        for cipher in CIPHERS {
            let ours = StaticKeypair::generate(DhKind::X25519, &mut rng);
            let theirs = StaticKeypair::generate(DhKind::X25519, &mut rng);
            let their_priv = theirs.private_bytes();
            let mut snow_i = snow::Builder::new(snow_params(cipher))
                .local_private_key(their_priv.as_slice())
                .build_initiator()
                .unwrap();

            let mut m1 = vec![0u8; 1024];
            let n = snow_i.write_message(b"cert+index", &mut m1).unwrap();
            m1.truncate(n);
            let (payload, rs, resp) = Responder::read_message_1(cipher, ours.clone(), &m1).unwrap();
            assert_eq!(payload, b"cert+index");
            assert_eq!(rs, theirs.public());
            assert_eq!(resp.cipher(), cipher);

            let (m2, keys) = resp.write_message_2(b"", &mut rng).unwrap();
            assert_eq!(m2.len(), 32 + 48 + 16);
            let mut buf = vec![0u8; 1024];
            let n = snow_i.read_message(&m2, &mut buf).unwrap();
            assert_eq!(n, 0);
            assert_eq!(snow_i.get_remote_static().unwrap(), ours.public());
            let (k1, k2) = snow_i.dangerously_get_raw_split();
            assert_eq!(keys.initiator_to_responder, k1, "{cipher:?}");
            assert_eq!(keys.responder_to_initiator, k2, "{cipher:?}");
        }
    }

    #[test]
    fn snow_transport_interop_with_split_keys() {
        // Data sealed with our session ciphers opens with snow's own transport (same nonce rule).
        let mut rng = StdRng::seed_from_u64(3);
        for cipher in CIPHERS {
            let ours = StaticKeypair::generate(DhKind::X25519, &mut rng);
            let theirs = StaticKeypair::generate(DhKind::X25519, &mut rng);
            let their_priv = theirs.private_bytes();
            let mut snow_r = snow::Builder::new(snow_params(cipher))
                .local_private_key(their_priv.as_slice())
                .build_responder()
                .unwrap();
            let mut init = Initiator::new(cipher, ours);
            let m1 = init.write_message_1(b"", &mut rng).unwrap();
            let mut buf = vec![0u8; 1024];
            snow_r.read_message(&m1, &mut buf).unwrap();
            let n = snow_r.write_message(b"", &mut buf).unwrap();
            let (_, _, keys) = init.read_message_2(&buf[..n]).unwrap();
            let snow_t = snow_r.into_stateless_transport_mode().unwrap();

            let (send, recv) = keys.into_ciphers(true).unwrap();
            // snow uses empty AD; counter 3 as the first data packet would.
            let mut pt = b"ping".to_vec();
            let tag = send.seal_in_place(KeyUse::Data, 3, &[], &mut pt).unwrap();
            pt.extend_from_slice(&tag);
            let mut out = vec![0u8; 64];
            let n = snow_t.read_message(3, &pt, &mut out).unwrap();
            assert_eq!(&out[..n], b"ping", "{cipher:?}");

            let n = snow_t
                .write_message(0x0102_0304, b"pong", &mut out)
                .unwrap();
            let mut ct = out[..n].to_vec();
            assert_eq!(
                recv.open_in_place(KeyUse::Data, 0x0102_0304, &[], &mut ct)
                    .unwrap(),
                b"pong",
                "{cipher:?}"
            );
        }
    }

    #[test]
    fn round_trips_all_suites() {
        let mut rng = StdRng::seed_from_u64(10);
        for dh in CURVES {
            for cipher in CIPHERS {
                let klen = dh.public_key_len();
                let t = handshake(dh, cipher, &mut rng, b"one", b"two");
                assert_eq!(t.m1.len(), 2 * klen + 3);
                assert_eq!(
                    &t.m1[klen..2 * klen],
                    t.i_key.public(),
                    "static key travels in clear"
                );
                assert_eq!(t.m2.len(), klen + klen + 16 + 3 + 16);
                let (p2, rs2, i_keys) = t.init.read_message_2(&t.m2).unwrap();
                assert_eq!(
                    (p2.as_slice(), rs2.as_slice()),
                    (&b"two"[..], t.r_key.public())
                );
                assert_eq!(i_keys, t.r_keys);
                assert_ne!(i_keys.initiator_to_responder, i_keys.responder_to_initiator);

                // The pieces compose: initiator's send opens with the responder's recv and back.
                let i_sess = i_keys.into_session(true).unwrap();
                let r_sess = t.r_keys.clone().into_session(false).unwrap();
                let mut frame = [0u8; 16 + 4 + 16];
                frame[16..20].copy_from_slice(b"data");
                let c = i_sess.next_counter().unwrap();
                assert_eq!(c, 3);
                i_sess
                    .send
                    .seal_frame(KeyUse::Data, c, &mut frame, 16)
                    .unwrap();
                assert_eq!(
                    r_sess.open_frame(KeyUse::Data, c, &mut frame, 16).unwrap(),
                    b"data"
                );
                let mut frame = [0u8; 16 + 4 + 16];
                frame[16..20].copy_from_slice(b"back");
                let c = r_sess.next_counter().unwrap();
                r_sess
                    .send
                    .seal_frame(KeyUse::Data, c, &mut frame, 16)
                    .unwrap();
                assert_eq!(
                    i_sess.open_frame(KeyUse::Data, c, &mut frame, 16).unwrap(),
                    b"back"
                );
            }
        }
    }

    #[test]
    fn deterministic_with_seeded_rng() {
        let run = |dh| {
            let mut rng = StdRng::seed_from_u64(99);
            let t = handshake(dh, CipherKind::AesGcm, &mut rng, b"x", b"y");
            (t.m1, t.m2, t.r_keys)
        };
        for dh in CURVES {
            assert_eq!(run(dh), run(dh));
        }
    }

    #[test]
    fn wrong_state_calls() {
        let mut rng = StdRng::seed_from_u64(4);
        let k = StaticKeypair::generate(DhKind::X25519, &mut rng);
        let mut init = Initiator::new(CipherKind::AesGcm, k);
        assert_eq!(
            init.read_message_2(&[0u8; 200]).err(),
            Some(NoiseError::WrongState)
        );
        let m1 = init.write_message_1(b"", &mut rng).unwrap();
        assert_eq!(m1.len(), 64);
        assert_eq!(
            init.write_message_1(b"", &mut rng).err(),
            Some(NoiseError::WrongState)
        );
        assert_eq!(init.cipher(), CipherKind::AesGcm);
        assert_eq!(init.dh(), DhKind::X25519);
    }

    #[test]
    fn dyn_rng_is_accepted() {
        let mut rng = StdRng::seed_from_u64(4);
        let dyn_rng: &mut dyn CryptoRngCore = &mut rng;
        for dh in CURVES {
            let k = StaticKeypair::generate(dh, dyn_rng);
            let mut init = Initiator::new(CipherKind::ChaChaPoly, k.clone());
            let m1 = init.write_message_1(b"z", dyn_rng).unwrap();
            let (_, _, resp) = Responder::read_message_1(CipherKind::ChaChaPoly, k, &m1).unwrap();
            let (m2, _) = resp.write_message_2(b"", dyn_rng).unwrap();
            assert!(init.read_message_2(&m2).is_ok());
        }
    }

    #[test]
    fn p256_dh_known_answer() {
        // NIST CAVS ECC CDH primitive test vector (P-256, COUNT = 0).
        let d = hex::decode("7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534")
            .unwrap();
        let our_pub = concat!(
            "04ead218590119e8876b29146ff89ca61770c4edbbf97d38ce385ed281d8a6b230",
            "28af61281fd35e2fa7002523acc85a429cb06ee6648325389f59edfce1405141"
        );
        let peer = hex::decode(concat!(
            "04700c48f77f56584c5cc632ca65640db91b6bacce3a4df6b42ce7cc838833d287",
            "db71e509e3fd9b060ddb20ba5c51dcc5948d46fbf640dfe0441782cab85fa4ac"
        ))
        .unwrap();
        let kp = StaticKeypair::from_private(DhKind::P256, &d).unwrap();
        assert_eq!(hex::encode(kp.public()), our_pub);
        assert_eq!(kp.private_bytes().to_vec(), d);
        let shared = kp
            .private
            .diffie_hellman(&RemotePublic::parse(DhKind::P256, &peer).unwrap())
            .unwrap();
        assert_eq!(
            hex::encode(shared),
            "46fc62106420ff012e54a434fbdd2d25ccc5852060561e68040dd7778997bd7b"
        );
    }

    #[test]
    fn x25519_dh_known_answer() {
        // RFC 7748 section 6.1.
        let a = hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
            .unwrap();
        let b_pub = hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
            .unwrap();
        let kp = StaticKeypair::from_private(DhKind::X25519, &a).unwrap();
        assert_eq!(
            hex::encode(kp.public()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let shared = kp
            .private
            .diffie_hellman(&RemotePublic::parse(DhKind::X25519, &b_pub).unwrap())
            .unwrap();
        assert_eq!(
            hex::encode(shared),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }

    #[test]
    fn keypair_loading() {
        let a = hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
            .unwrap();
        let a_pub = hex::decode("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
            .unwrap();
        assert_eq!(
            StaticKeypair::new(DhKind::X25519, &a, &a_pub)
                .unwrap()
                .public(),
            &a_pub[..]
        );
        assert_eq!(
            StaticKeypair::new(DhKind::X25519, &a, &[])
                .unwrap()
                .public(),
            &a_pub[..]
        );
        assert_eq!(
            StaticKeypair::new(DhKind::X25519, &a, &[0u8; 32]).unwrap_err(),
            NoiseError::KeyMismatch
        );
        assert_eq!(
            StaticKeypair::new(DhKind::P256, &a, &a_pub).unwrap_err(),
            NoiseError::KeyMismatch
        );
        for (dh, bad) in [
            (DhKind::X25519, vec![1u8; 31]),
            (DhKind::P256, vec![0u8; 32]),
            (DhKind::P256, vec![0xff; 32]),
        ] {
            assert_eq!(
                StaticKeypair::from_private(dh, &bad).unwrap_err(),
                NoiseError::InvalidPrivateKey
            );
        }
        let dbg = format!(
            "{:?}",
            StaticKeypair::from_private(DhKind::X25519, &a).unwrap()
        );
        assert!(
            !dbg.contains("119, 7, 109"),
            "private key must not be printed: {dbg}"
        );
    }

    #[test]
    fn garbage_and_short_messages_error_not_panic() {
        let mut rng = StdRng::seed_from_u64(5);
        for dh in CURVES {
            for cipher in CIPHERS {
                let t = handshake(dh, cipher, &mut rng, b"p", b"q");
                let read1 = |m: &[u8]| {
                    Responder::read_message_1(cipher, t.r_key.clone(), m).map(|(p, _, _)| p)
                };
                let klen = dh.public_key_len();
                for len in 0..t.m1.len() {
                    let r = read1(&t.m1[..len]);
                    if len < 2 * klen {
                        assert!(
                            matches!(r, Err(NoiseError::ShortMessage { .. })),
                            "{dh:?} m1 len {len}"
                        );
                    } else {
                        // Message 1 is in clear: a truncated payload cannot be detected here.
                        assert_eq!(r.unwrap().len(), len - 2 * klen);
                    }
                }
                for len in 0..t.m2.len() {
                    assert!(
                        t.init.read_message_2(&t.m2[..len]).is_err(),
                        "{dh:?} truncated m2 {len}"
                    );
                }
                // Every single-byte flip in message 2 is rejected, and the initiator survives it.
                for idx in 0..t.m2.len() {
                    let mut bad = t.m2.clone();
                    bad[idx] ^= 0x40;
                    assert!(
                        t.init.read_message_2(&bad).is_err(),
                        "{dh:?} {cipher:?} flip {idx}"
                    );
                }
                assert!(
                    t.init.read_message_2(&t.m2).is_ok(),
                    "state unharmed by failures"
                );
                // Random garbage of various sizes.
                for len in [0usize, 1, 31, 64, 65, 130, 131, 200, 500] {
                    let mut g = vec![0u8; len];
                    rand_core::RngCore::fill_bytes(&mut rng, &mut g);
                    if dh == DhKind::P256 || len < 64 {
                        assert!(read1(&g).is_err(), "{dh:?} garbage m1 {len}");
                    }
                    assert!(t.init.read_message_2(&g).is_err());
                }
            }
        }
    }

    #[test]
    fn p256_rejects_bad_points() {
        let mut rng = StdRng::seed_from_u64(6);
        let t = handshake(DhKind::P256, CipherKind::AesGcm, &mut rng, b"", b"");
        let read1 =
            |m: &[u8]| Responder::read_message_1(CipherKind::AesGcm, t.r_key.clone(), m).err();
        let mut bad = t.m1.clone();
        bad[64] ^= 1; // last byte of e's y coordinate: off the curve
        assert_eq!(read1(&bad), Some(NoiseError::InvalidPublicKey));
        let mut bad = t.m1.clone();
        bad[65] = 0x02; // s not in uncompressed form
        assert_eq!(read1(&bad), Some(NoiseError::InvalidPublicKey));
        assert_eq!(read1(&[0u8; 130]), Some(NoiseError::InvalidPublicKey));
        let mut bad = t.m2.clone();
        bad[10] ^= 1; // responder's e off the curve
        assert_eq!(
            t.init.read_message_2(&bad).err(),
            Some(NoiseError::InvalidPublicKey)
        );
    }

    #[test]
    fn x25519_low_order_point_rejected() {
        let mut rng = StdRng::seed_from_u64(7);
        let r_key = StaticKeypair::generate(DhKind::X25519, &mut rng);
        let i_key = StaticKeypair::generate(DhKind::X25519, &mut rng);
        // e = 0 (low order), s valid: message 1 reads (it is clear text) but message 2 cannot be built.
        let mut m1 = vec![0u8; 32];
        m1.extend_from_slice(i_key.public());
        let (_, _, resp) = Responder::read_message_1(CipherKind::ChaChaPoly, r_key, &m1).unwrap();
        assert_eq!(
            resp.write_message_2(b"", &mut rng).err(),
            Some(NoiseError::WeakSharedSecret)
        );
        // And an initiator fed a message 2 with a low-order e refuses it.
        let t = handshake(DhKind::X25519, CipherKind::ChaChaPoly, &mut rng, b"", b"");
        let mut bad = t.m2.clone();
        bad[..32].fill(0);
        assert_eq!(
            t.init.read_message_2(&bad).err(),
            Some(NoiseError::WeakSharedSecret)
        );
    }

    #[test]
    fn mismatched_cipher_or_curve_fails() {
        let mut rng = StdRng::seed_from_u64(8);
        let i_key = StaticKeypair::generate(DhKind::X25519, &mut rng);
        let r_key = StaticKeypair::generate(DhKind::X25519, &mut rng);
        let mut init = Initiator::new(CipherKind::AesGcm, i_key);
        let m1 = init.write_message_1(b"", &mut rng).unwrap();
        let (_, _, resp) = Responder::read_message_1(CipherKind::ChaChaPoly, r_key, &m1).unwrap();
        let (m2, _) = resp.write_message_2(b"", &mut rng).unwrap();
        assert_eq!(init.read_message_2(&m2).err(), Some(NoiseError::Decrypt));

        // A P256 responder cannot parse a 25519 message 1 (keys of the wrong form).
        let p_key = StaticKeypair::generate(DhKind::P256, &mut rng);
        assert!(Responder::read_message_1(CipherKind::AesGcm, p_key, &m1).is_err());
    }

    #[test]
    fn payload_limit() {
        let mut rng = StdRng::seed_from_u64(9);
        let k = StaticKeypair::generate(DhKind::X25519, &mut rng);
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        let mut init = Initiator::new(CipherKind::AesGcm, k.clone());
        assert_eq!(
            init.write_message_1(&big, &mut rng).err(),
            Some(NoiseError::PayloadTooLong)
        );
        // The failed call did not consume the attempt.
        let m1 = init
            .write_message_1(&big[..MAX_PAYLOAD_LEN], &mut rng)
            .unwrap();
        let (p, _, resp) = Responder::read_message_1(CipherKind::AesGcm, k, &m1).unwrap();
        assert_eq!(p.len(), MAX_PAYLOAD_LEN);
        assert_eq!(
            resp.write_message_2(&big, &mut rng).err(),
            Some(NoiseError::PayloadTooLong)
        );
    }

    fn wiped_on_drop<T: ZeroizeOnDrop>() {}

    /// Fails to compile if a type holding key material stops wiping itself on drop (for the
    /// third-party ones: if their `zeroize` feature is turned off).
    #[test]
    fn key_material_is_held_in_types_that_wipe_on_drop() {
        // x25519-dalek derives `Zeroize` with `zeroize(drop)` (a `Drop` that zeroizes) but not
        // the marker: check both halves. A bare [u8; 32] would need no drop at all.
        fn zeroizable<T: Zeroize>() {}
        zeroizable::<x25519_dalek::StaticSecret>();
        assert!(std::mem::needs_drop::<x25519_dalek::StaticSecret>());
        wiped_on_drop::<p256::SecretKey>();
        wiped_on_drop::<StaticKeypair>();
        wiped_on_drop::<SessionKeys>();
        // Chaining key, HKDF outputs, DH results, raw private key copies.
        wiped_on_drop::<Secret32>();
        let sym = SymmetricState::new(DhKind::X25519, CipherKind::AesGcm);
        let ck: &Secret32 = &sym.ck;
        assert_ne!(**ck, [0u8; HASH_LEN]);
        let kp = StaticKeypair::generate(DhKind::X25519, &mut rand::rngs::OsRng);
        let raw: Zeroizing<[u8; PRIVATE_KEY_LEN]> = kp.private_bytes();
        assert_eq!(
            StaticKeypair::from_private(DhKind::X25519, raw.as_slice())
                .map(|k| k.public)
                .ok(),
            Some(kp.public.clone())
        );
    }

    /// `SessionKeys::drop` is `zeroize`: both keys end up zero.
    #[test]
    fn session_keys_wipe_their_keys() {
        let mut keys = SessionKeys {
            cipher: CipherKind::AesGcm,
            initiator_to_responder: [0xab; 32],
            responder_to_initiator: [0xcd; 32],
        };
        keys.zeroize();
        assert_eq!(keys.initiator_to_responder, [0; 32]);
        assert_eq!(keys.responder_to_initiator, [0; 32]);
    }

    #[test]
    fn session_keys_debug_hides_keys() {
        let keys = SessionKeys {
            cipher: CipherKind::AesGcm,
            initiator_to_responder: [0xab; 32],
            responder_to_initiator: [0xcd; 32],
        };
        let dbg = format!("{keys:?}");
        assert!(!dbg.contains("171") && !dbg.contains("205"), "{dbg}");
    }
}
