//! Data-plane AEAD: the per-tunnel AES-256-GCM / ChaCha20-Poly1305 ciphers keyed from the Noise split,
//! Nebula's nonce layout and counter limits, in-place seal/open, AD-only relay tags and the `Session` glue.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use once_cell::race::OnceBox;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
use zeroize::Zeroizing;

use crate::replay::ReplayWindow;

/// Length of the authentication tag appended to every encrypted frame.
pub const TAG_LEN: usize = 16;

/// Length of an AEAD key (both ciphers use 256-bit keys).
pub const KEY_LEN: usize = 32;

/// Length of the AEAD nonce: 4 zero bytes followed by the 64-bit counter.
pub const NONCE_LEN: usize = 12;

/// Once a tunnel's send counter reaches this value the tunnel should be re-handshaken
/// (1.11.1 `RehandshakeAfterMessages` = 2^34).
pub const REHANDSHAKE_AFTER_MESSAGES: u64 = 1 << 34;

/// Counters at or above this value are never encrypted (1.11.1 `RejectAfterMessages` = 2^64 − 1 − 2^40).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 40);

// The rehandshake point must come well before the hard stop.
const _: () = assert!(REHANDSHAKE_AFTER_MESSAGES < REJECT_AFTER_MESSAGES);

/// The symmetric cipher of a tunnel (config `cipher: aes` / `cipher: chachapoly`); must match mesh-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherKind {
    /// AES-256-GCM (`AESGCM` in the Noise name); nonce counter is big-endian.
    AesGcm,
    /// ChaCha20-Poly1305, IETF 12-byte nonce (`ChaChaPoly` in the Noise name); nonce counter is little-endian.
    ChaChaPoly,
}

impl CipherKind {
    /// The cipher's name as it appears in the Noise protocol name.
    pub fn noise_name(self) -> &'static str {
        match self {
            CipherKind::AesGcm => "AESGCM",
            CipherKind::ChaChaPoly => "ChaChaPoly",
        }
    }

    /// The 12-byte nonce for `counter`: `00 00 00 00 || counter`, BE for AES-GCM, LE for ChaCha20-Poly1305.
    pub fn nonce(self, counter: u64) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        let ctr = match self {
            CipherKind::AesGcm => counter.to_be_bytes(),
            CipherKind::ChaChaPoly => counter.to_le_bytes(),
        };
        nonce[4..].copy_from_slice(&ctr);
        nonce
    }

    fn algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            CipherKind::AesGcm => &AES_256_GCM,
            CipherKind::ChaChaPoly => &CHACHA20_POLY1305,
        }
    }
}

/// Errors of the data-plane AEAD layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    /// The key could not be loaded into the cipher implementation.
    #[error("invalid AEAD key")]
    InvalidKey,
    /// The counter is at or past `REJECT_AFTER_MESSAGES`; the tunnel must be replaced, never reused.
    #[error("message counter exhausted")]
    CounterExhausted,
    /// The buffer is too short to hold the associated data and/or the 16-byte tag.
    #[error("buffer too short for AEAD frame")]
    ShortBuffer,
    /// Authentication failed: wrong key, wrong counter, altered ciphertext, tag or associated data.
    #[error("AEAD authentication failed")]
    Authentication,
    /// Sealing failed inside the cipher implementation (input too long for the algorithm).
    #[error("AEAD seal failed")]
    Seal,
    /// The counter was already received or is outside the replay window.
    #[error("replayed or out-of-window counter")]
    Replay,
}

/// Whether a call may leave the expanded key schedule behind in the cipher.
///
/// An AES-256-GCM schedule (round keys and the GHASH table) takes about 560 bytes; the raw key
/// 32. A tunnel that carries data keeps its schedules, so the data path never expands a key. A
/// tunnel that only carries control messages (lighthouse updates, connection tests: most of a
/// lighthouse's tunnels) expands one per message, about a microsecond, and keeps only raw keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// Data-plane traffic (messages, relayed frames): keep the schedule once expanded.
    Data,
    /// Control traffic (lighthouse, test, close, relay control): use a kept schedule if there
    /// is one, else expand one for this call only.
    Control,
}

/// One direction of a tunnel: an AEAD key plus Nebula's nonce rule. Stateless (the counter is passed in),
/// so one value may be shared by several threads. The raw key is wiped on drop; the expanded
/// schedule is built on first use (see [`KeyUse`]).
pub struct SessionCipher {
    raw: Zeroizing<[u8; KEY_LEN]>,
    kind: CipherKind,
    /// Built at most once (a race between two workers drops the loser's copy); one pointer.
    schedule: OnceBox<LessSafeKey>,
}

impl Clone for SessionCipher {
    fn clone(&self) -> Self {
        Self {
            raw: self.raw.clone(),
            kind: self.kind,
            schedule: OnceBox::new(),
        }
    }
}

impl std::fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCipher")
            .field("kind", &self.kind)
            .field("expanded", &self.schedule.get().is_some())
            .finish_non_exhaustive()
    }
}

impl SessionCipher {
    /// Builds the cipher from a raw 32-byte key (one half of the Noise split). The key is checked
    /// by expanding it once; the schedule is not kept until a [`KeyUse::Data`] call.
    pub fn new(kind: CipherKind, key: &[u8; KEY_LEN]) -> Result<Self, AeadError> {
        let cipher = Self {
            raw: Zeroizing::new(*key),
            kind,
            schedule: OnceBox::new(),
        };
        cipher.expand()?;
        Ok(cipher)
    }

    fn expand(&self) -> Result<LessSafeKey, AeadError> {
        let unbound = UnboundKey::new(self.kind.algorithm(), &*self.raw)
            .map_err(|_| AeadError::InvalidKey)?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Whether the expanded schedule is held (a data call has been made).
    pub fn is_expanded(&self) -> bool {
        self.schedule.get().is_some()
    }

    /// Runs `f` with the key schedule: the kept one, or one expanded now (and kept for
    /// [`KeyUse::Data`]).
    fn with_key<T>(
        &self,
        use_: KeyUse,
        f: impl FnOnce(&LessSafeKey) -> Result<T, AeadError>,
    ) -> Result<T, AeadError> {
        if let Some(key) = self.schedule.get() {
            return f(key);
        }
        let key = self.expand()?;
        match use_ {
            KeyUse::Data => f(self.schedule.get_or_init(|| Box::new(key))),
            KeyUse::Control => f(&key),
        }
    }

    /// The cipher this key belongs to.
    pub fn kind(&self) -> CipherKind {
        self.kind
    }

    fn nonce(&self, counter: u64) -> Nonce {
        Nonce::assume_unique_for_key(self.kind.nonce(counter))
    }

    /// Encrypts `in_out` in place and returns the tag. Fails with `CounterExhausted` for counters
    /// `>= REJECT_AFTER_MESSAGES`.
    pub fn seal_in_place(
        &self,
        use_: KeyUse,
        counter: u64,
        ad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(AeadError::CounterExhausted);
        }
        self.seal_unchecked(use_, counter, ad, in_out)
    }

    /// Seal without the counter ceiling (the Noise handshake uses nonces 0 and 1 of its own keys).
    pub(crate) fn seal_unchecked(
        &self,
        use_: KeyUse,
        counter: u64,
        ad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        self.with_key(use_, |key| {
            key.seal_in_place_separate_tag(self.nonce(counter), Aad::from(ad), in_out)
                .map(|tag| tag_bytes(&tag))
                .map_err(|_| AeadError::Seal)
        })
    }

    /// Seals a whole frame in place: `frame = ad (ad_len bytes) || plaintext || 16 spare bytes`.
    /// The plaintext is encrypted where it lies and the tag is written into the last 16 bytes, so the
    /// frame becomes `ad || ciphertext || tag` (for data packets `ad_len` = 16, the header).
    pub fn seal_frame(
        &self,
        use_: KeyUse,
        counter: u64,
        frame: &mut [u8],
        ad_len: usize,
    ) -> Result<(), AeadError> {
        let body_end = frame
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(AeadError::ShortBuffer)?;
        if ad_len > body_end {
            return Err(AeadError::ShortBuffer);
        }
        let (head, tag_slot) = frame.split_at_mut(body_end);
        let (ad, plaintext) = head.split_at_mut(ad_len);
        let tag = self.seal_in_place(use_, counter, ad, plaintext)?;
        tag_slot.copy_from_slice(&tag);
        Ok(())
    }

    /// Appends-style seal: encrypts `buf[start..]` in place (AD = `buf[..start]`) and pushes the tag.
    /// Allocates only if `buf` lacks 16 bytes of spare capacity.
    pub fn seal_append(
        &self,
        use_: KeyUse,
        counter: u64,
        buf: &mut Vec<u8>,
        ad_len: usize,
    ) -> Result<(), AeadError> {
        if ad_len > buf.len() {
            return Err(AeadError::ShortBuffer);
        }
        let (ad, plaintext) = buf.split_at_mut(ad_len);
        let tag = self.seal_in_place(use_, counter, ad, plaintext)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Decrypts `ciphertext || tag` in place and returns the plaintext (the first `len − 16` bytes).
    pub fn open_in_place<'a>(
        &self,
        use_: KeyUse,
        counter: u64,
        ad: &[u8],
        in_out: &'a mut [u8],
    ) -> Result<&'a mut [u8], AeadError> {
        if in_out.len() < TAG_LEN {
            return Err(AeadError::ShortBuffer);
        }
        self.with_key(use_, |key| {
            key.open_in_place(self.nonce(counter), Aad::from(ad), in_out)
                .map_err(|_| AeadError::Authentication)
        })
    }

    /// Opens a whole frame `ad (ad_len bytes) || ciphertext || tag` in place and returns the plaintext,
    /// which sits at `frame[ad_len..len − 16]`.
    pub fn open_frame<'a>(
        &self,
        use_: KeyUse,
        counter: u64,
        frame: &'a mut [u8],
        ad_len: usize,
    ) -> Result<&'a mut [u8], AeadError> {
        if frame.len() < ad_len.saturating_add(TAG_LEN) {
            return Err(AeadError::ShortBuffer);
        }
        let (ad, rest) = frame.split_at_mut(ad_len);
        self.open_in_place(use_, counter, ad, rest)
    }

    /// Tag over `ad` with an empty plaintext (relay frames: `outer header || inner packet` is the AD).
    pub fn seal_ad_only(
        &self,
        use_: KeyUse,
        counter: u64,
        ad: &[u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        self.seal_in_place(use_, counter, ad, &mut [])
    }

    /// Verifies a tag produced by [`seal_ad_only`](Self::seal_ad_only).
    pub fn open_ad_only(
        &self,
        use_: KeyUse,
        counter: u64,
        ad: &[u8],
        tag: &[u8],
    ) -> Result<(), AeadError> {
        let tag = Tag::try_from(tag).map_err(|_| AeadError::ShortBuffer)?;
        self.with_key(use_, |key| {
            key.open_in_place_separate_tag(self.nonce(counter), Aad::from(ad), tag, &mut [], 0..)
                .map(|_| ())
                .map_err(|_| AeadError::Authentication)
        })
    }

    /// Verifies a relay frame `ad || tag` (tag = last 16 bytes) and returns the authenticated `ad` part.
    pub fn open_ad_only_frame<'a>(
        &self,
        use_: KeyUse,
        counter: u64,
        frame: &'a [u8],
    ) -> Result<&'a [u8], AeadError> {
        let split = frame
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(AeadError::ShortBuffer)?;
        let (ad, tag) = frame.split_at(split);
        self.open_ad_only(use_, counter, ad, tag)?;
        Ok(ad)
    }
}

fn tag_bytes(tag: &Tag) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// The keys, send counter, replay window and activity flags of one established tunnel, shared
/// (behind an `Arc`) by the engine and the data-plane workers. Everything is `&self`: the send
/// counter and the flags are atomics, the replay window sits behind its own small lock, taken
/// twice per received packet and only ever contended when two workers receive from one peer.
#[derive(Debug)]
pub struct Session {
    /// Encrypts what we send.
    pub send: SessionCipher,
    /// Decrypts what the peer sends.
    pub recv: SessionCipher,
    send_counter: AtomicU64,
    /// Replay window for received counters, seeded with the handshake's counters 1 and 2.
    replay: Mutex<ReplayWindow>,
    /// An authenticated packet arrived since the last connection check.
    traffic_in: AtomicBool,
    /// We sent a packet since the last connection check.
    traffic_out: AtomicBool,
    /// Packets sent from the TUN (drives path promotion and lighthouse re-queries).
    sent_from_tun: AtomicU32,
    /// Authenticated messages received, and their plaintext bytes (status and per-peer metrics).
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    /// Plaintext bytes sealed (the message count is the send counter).
    tx_bytes: AtomicU64,
}

/// A tunnel's traffic since its handshake: messages and plaintext bytes each way (control
/// messages included; an IP packet's bytes are its whole length).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl Session {
    /// Session state right after the handshake: send counter 2 (first packet uses 3), counters 1 and 2
    /// already marked as received.
    pub fn new(send: SessionCipher, recv: SessionCipher) -> Self {
        Self {
            send,
            recv,
            send_counter: AtomicU64::new(2),
            replay: Mutex::new(ReplayWindow::after_handshake()),
            traffic_in: AtomicBool::new(false),
            traffic_out: AtomicBool::new(false),
            sent_from_tun: AtomicU32::new(0),
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
        }
    }

    /// Messages and bytes each way so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            // Counters 1 and 2 were the handshake's.
            tx_packets: self.send_counter().saturating_sub(2),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
        }
    }

    /// Count `len` plaintext bytes sealed for the peer.
    pub fn note_sent(&self, len: usize) {
        self.tx_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    fn note_received(&self, len: usize) {
        self.rx_packets.fetch_add(1, Ordering::Relaxed);
        self.rx_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// The replay window (a panic elsewhere cannot leave it half-updated: every update is a
    /// single call, so a poisoned lock is still consistent).
    pub fn replay(&self) -> MutexGuard<'_, ReplayWindow> {
        self.replay.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Note inbound (authenticated) traffic.
    pub fn mark_in(&self) {
        self.traffic_in.store(true, Ordering::Relaxed);
    }

    /// Note outbound traffic.
    pub fn mark_out(&self) {
        self.traffic_out.store(true, Ordering::Relaxed);
    }

    /// Read and clear the (in, out) traffic flags (the connection check).
    pub fn take_traffic(&self) -> (bool, bool) {
        (
            self.traffic_in.swap(false, Ordering::Relaxed),
            self.traffic_out.swap(false, Ordering::Relaxed),
        )
    }

    /// The last send counter handed out (Go's `messageCounter`), for diagnostics.
    pub fn sent_counter(&self) -> u64 {
        self.send_counter.load(Ordering::Relaxed)
    }

    /// Count one packet sent from the TUN; returns the new count (wrapping).
    pub fn count_sent_from_tun(&self) -> u32 {
        self.sent_from_tun
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
    }

    /// Reserves the next send counter (pre-increment: the first call after the handshake returns 3).
    /// Once `REJECT_AFTER_MESSAGES` is reached the counter is pinned there and this fails forever.
    pub fn next_counter(&self) -> Result<u64, AeadError> {
        let c = self
            .send_counter
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        if c >= REJECT_AFTER_MESSAGES {
            self.send_counter
                .store(REJECT_AFTER_MESSAGES, Ordering::Relaxed);
            return Err(AeadError::CounterExhausted);
        }
        Ok(c)
    }

    /// The last counter handed out (2 right after the handshake).
    pub fn send_counter(&self) -> u64 {
        self.send_counter.load(Ordering::Relaxed)
    }

    /// Whether the send counter has reached the re-handshake point (2^34).
    pub fn needs_rehandshake(&self) -> bool {
        self.send_counter() >= REHANDSHAKE_AFTER_MESSAGES
    }

    /// Whether the send counter is exhausted (the tunnel must be deleted).
    pub fn is_exhausted(&self) -> bool {
        self.send_counter() >= REJECT_AFTER_MESSAGES
    }

    /// Receive path for an encrypted frame `ad || ciphertext || tag`: replay check, decrypt in place,
    /// replay update. Returns the plaintext slice. Nothing is committed to the window on failure.
    pub fn open_frame<'a>(
        &self,
        use_: KeyUse,
        counter: u64,
        frame: &'a mut [u8],
        ad_len: usize,
    ) -> Result<&'a mut [u8], AeadError> {
        let opened = self.replay_guarded(counter, || {
            self.recv.open_frame(use_, counter, frame, ad_len)
        })?;
        self.note_received(opened.len());
        Ok(opened)
    }

    /// Receive path for a relay frame `ad || tag`: replay check, verify, replay update (1.11 behaviour).
    /// Returns the authenticated `ad` part.
    pub fn open_ad_only_frame<'a>(
        &self,
        counter: u64,
        frame: &'a [u8],
    ) -> Result<&'a [u8], AeadError> {
        let ad = self.replay_guarded(counter, || {
            self.recv.open_ad_only_frame(KeyUse::Data, counter, frame)
        })?;
        // A relay frame: the inner packet after its 16-byte header.
        self.note_received(ad.len().saturating_sub(proto::header::HEADER_LEN));
        Ok(ad)
    }

    /// Check `counter` against the replay window, run `open`, and only if it authenticates
    /// commit the counter (a second packet with it that got there first wins).
    fn replay_guarded<T>(
        &self,
        counter: u64,
        open: impl FnOnce() -> Result<T, AeadError>,
    ) -> Result<T, AeadError> {
        if !self.replay().check(counter) {
            return Err(AeadError::Replay);
        }
        let opened = open()?;
        if !self.replay().update(counter) {
            return Err(AeadError::Replay);
        }
        Ok(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
        0x1e, 0x1f,
    ];
    const KINDS: [CipherKind; 2] = [CipherKind::AesGcm, CipherKind::ChaChaPoly];

    fn ring_seal(kind: CipherKind, nonce: [u8; 12], ad: &[u8], pt: &[u8]) -> Vec<u8> {
        let key = LessSafeKey::new(UnboundKey::new(kind.algorithm(), &KEY).unwrap());
        let mut buf = pt.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(ad), &mut buf)
            .unwrap();
        buf
    }

    #[test]
    fn nonce_layout() {
        let c = 0x0102_0304_0506_0708u64;
        assert_eq!(
            CipherKind::AesGcm.nonce(c),
            [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(
            CipherKind::ChaChaPoly.nonce(c),
            [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
        assert_eq!(
            CipherKind::AesGcm.nonce(3),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]
        );
        assert_eq!(
            CipherKind::ChaChaPoly.nonce(3),
            [0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn control_use_expands_for_the_call_and_data_use_keeps_the_schedule() {
        let ad = [7u8; 16];
        for kind in KINDS {
            let sender = SessionCipher::new(kind, &KEY).unwrap();
            let receiver = SessionCipher::new(kind, &KEY).unwrap();
            assert!(!sender.is_expanded(), "a new cipher holds only its raw key");
            let mut control = ad.to_vec();
            control.extend_from_slice(b"lighthouse update");
            control.extend_from_slice(&[0u8; TAG_LEN]);
            sender
                .seal_frame(KeyUse::Control, 3, &mut control, 16)
                .unwrap();
            assert!(
                !sender.is_expanded(),
                "{kind:?}: control seal keeps nothing"
            );
            let opened = receiver
                .open_frame(KeyUse::Control, 3, &mut control, 16)
                .unwrap();
            assert_eq!(opened, b"lighthouse update");
            assert!(
                !receiver.is_expanded(),
                "{kind:?}: control open keeps nothing"
            );

            // Data use keeps the schedule, and both forms produce the same bytes.
            let mut via_control = ad.to_vec();
            via_control.extend_from_slice(b"data");
            via_control.extend_from_slice(&[0u8; TAG_LEN]);
            let mut via_data = via_control.clone();
            sender
                .seal_frame(KeyUse::Control, 4, &mut via_control, 16)
                .unwrap();
            sender
                .seal_frame(KeyUse::Data, 4, &mut via_data, 16)
                .unwrap();
            assert!(
                sender.is_expanded(),
                "{kind:?}: data seal keeps the schedule"
            );
            assert_eq!(via_control, via_data);
            receiver
                .open_frame(KeyUse::Data, 4, &mut via_data, 16)
                .unwrap();
            assert!(receiver.is_expanded());
            // A kept schedule serves control calls too, and a clone starts without one.
            receiver
                .open_frame(KeyUse::Control, 4, &mut via_control, 16)
                .unwrap();
            assert!(!receiver.clone().is_expanded());
        }
        // What an idle (control-only) tunnel holds per direction: the raw key, not the schedule.
        assert!(std::mem::size_of::<SessionCipher>() <= 64);
    }

    #[test]
    fn seal_matches_ring_with_expected_nonce_order() {
        let ad = hex::decode("10000000000000010000000000000003").unwrap();
        let pt = b"hello nebula";
        let be = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
        let le = [0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
        for (kind, right, wrong) in [
            (CipherKind::AesGcm, be, le),
            (CipherKind::ChaChaPoly, le, be),
        ] {
            let c = SessionCipher::new(kind, &KEY).unwrap();
            let mut frame = ad.clone();
            frame.extend_from_slice(pt);
            frame.extend_from_slice(&[0u8; TAG_LEN]);
            c.seal_frame(KeyUse::Data, 3, &mut frame, 16).unwrap();
            assert_eq!(&frame[..16], &ad[..], "AD left untouched");
            assert_eq!(
                &frame[16..],
                &ring_seal(kind, right, &ad, pt)[..],
                "{kind:?}"
            );
            assert_ne!(
                &frame[16..],
                &ring_seal(kind, wrong, &ad, pt)[..],
                "{kind:?}"
            );
        }
    }

    #[test]
    fn known_answer_vectors() {
        // Key 00..1f, AD = 16 x 0x11, plaintext "abc", counter 0x0102030405060708; expected
        // ciphertext||tag computed independently (Python `cryptography`, nonce built by hand).
        let ad = [0x11u8; 16];
        let ctr = 0x0102_0304_0506_0708;
        let cases = [
            (
                CipherKind::AesGcm,
                "653306e5b73987945f4f8d4185a29f11cd55a4",
                "45d46e0163c8df6bc6caf308270f221c",
            ),
            (
                CipherKind::ChaChaPoly,
                "912bce10a08bbfb470fe352f1f84389cab5ab6",
                "eb4f4dacacf21899605e992041207e37",
            ),
        ];
        for (kind, sealed, ad_only_tag) in cases {
            let c = SessionCipher::new(kind, &KEY).unwrap();
            let mut buf = b"abc".to_vec();
            let tag = c.seal_in_place(KeyUse::Data, ctr, &ad, &mut buf).unwrap();
            buf.extend_from_slice(&tag);
            assert_eq!(hex::encode(&buf), sealed, "{kind:?}");
            assert_eq!(
                hex::encode(c.seal_ad_only(KeyUse::Data, 9, b"relay").unwrap()),
                ad_only_tag,
                "{kind:?}"
            );
            let mut ct = hex::decode(sealed).unwrap();
            assert_eq!(
                c.open_in_place(KeyUse::Data, ctr, &ad, &mut ct).unwrap(),
                b"abc"
            );
        }
    }

    #[test]
    fn round_trip_and_tamper() {
        for kind in KINDS {
            let c = SessionCipher::new(kind, &KEY).unwrap();
            let header = [0x10u8, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 7];
            let pt: Vec<u8> = (0..1300u32).map(|i| i as u8).collect();
            let mut frame = header.to_vec();
            frame.extend_from_slice(&pt);
            frame.extend_from_slice(&[0; TAG_LEN]);
            c.seal_frame(KeyUse::Data, 7, &mut frame, 16).unwrap();
            assert_ne!(&frame[16..16 + pt.len()], &pt[..]);

            let mut ok = frame.clone();
            assert_eq!(c.open_frame(KeyUse::Data, 7, &mut ok, 16).unwrap(), &pt[..]);

            // wrong counter
            let mut f = frame.clone();
            assert_eq!(
                c.open_frame(KeyUse::Data, 8, &mut f, 16),
                Err(AeadError::Authentication)
            );
            // flipped ciphertext, tag and AD bits
            for idx in [0usize, 5, 16, 100, frame.len() - 1] {
                let mut f = frame.clone();
                f[idx] ^= 0x01;
                assert_eq!(
                    c.open_frame(KeyUse::Data, 7, &mut f, 16),
                    Err(AeadError::Authentication),
                    "idx {idx}"
                );
            }
            // wrong key
            let other = SessionCipher::new(kind, &[9u8; 32]).unwrap();
            let mut f = frame.clone();
            assert_eq!(
                other.open_frame(KeyUse::Data, 7, &mut f, 16),
                Err(AeadError::Authentication)
            );
            // truncated
            let mut short = frame[..16 + 15].to_vec();
            assert_eq!(
                c.open_frame(KeyUse::Data, 7, &mut short, 16),
                Err(AeadError::ShortBuffer)
            );
            let mut tiny = [0u8; 3];
            assert_eq!(
                c.open_in_place(KeyUse::Data, 7, &[], &mut tiny),
                Err(AeadError::ShortBuffer)
            );
        }
    }

    #[test]
    fn wrong_ad_fails() {
        for kind in KINDS {
            let c = SessionCipher::new(kind, &KEY).unwrap();
            let mut buf = b"payload".to_vec();
            let tag = c
                .seal_in_place(KeyUse::Data, 42, b"header-a", &mut buf)
                .unwrap();
            buf.extend_from_slice(&tag);
            let mut b2 = buf.clone();
            assert_eq!(
                c.open_in_place(KeyUse::Data, 42, b"header-b", &mut b2),
                Err(AeadError::Authentication)
            );
            assert_eq!(
                c.open_in_place(KeyUse::Data, 42, b"header-a", &mut buf)
                    .unwrap(),
                b"payload"
            );
        }
    }

    #[test]
    fn empty_plaintext_frame_is_32_bytes() {
        for kind in KINDS {
            let c = SessionCipher::new(kind, &KEY).unwrap();
            let mut frame = [0x15u8; 32];
            c.seal_frame(KeyUse::Data, 3, &mut frame, 16).unwrap();
            assert_eq!(
                c.open_frame(KeyUse::Data, 3, &mut frame, 16).unwrap().len(),
                0
            );
        }
    }

    #[test]
    fn seal_append_matches_seal_frame() {
        for kind in KINDS {
            let c = SessionCipher::new(kind, &KEY).unwrap();
            let mut v = Vec::with_capacity(64);
            v.extend_from_slice(&[1u8; 16]);
            v.extend_from_slice(b"data");
            let cap = v.capacity();
            c.seal_append(KeyUse::Data, 5, &mut v, 16).unwrap();
            assert_eq!(v.capacity(), cap, "no reallocation with spare capacity");
            let mut f = [1u8; 16].to_vec();
            f.extend_from_slice(b"data");
            f.extend_from_slice(&[0; 16]);
            c.seal_frame(KeyUse::Data, 5, &mut f, 16).unwrap();
            assert_eq!(v, f);
            assert_eq!(
                c.seal_append(KeyUse::Data, 5, &mut v, 1000),
                Err(AeadError::ShortBuffer)
            );
        }
    }

    #[test]
    fn ad_only_relay_tag() {
        for kind in KINDS {
            let c = SessionCipher::new(kind, &KEY).unwrap();
            let ad = b"outer header + inner packet bytes";
            let tag = c.seal_ad_only(KeyUse::Data, 9, ad).unwrap();
            // Same as sealing an empty plaintext with ring directly.
            assert_eq!(tag.to_vec(), ring_seal(kind, kind.nonce(9), ad, &[]));
            c.open_ad_only(KeyUse::Data, 9, ad, &tag).unwrap();
            assert_eq!(
                c.open_ad_only(KeyUse::Data, 10, ad, &tag),
                Err(AeadError::Authentication)
            );
            assert_eq!(
                c.open_ad_only(KeyUse::Data, 9, b"other", &tag),
                Err(AeadError::Authentication)
            );
            assert_eq!(
                c.open_ad_only(KeyUse::Data, 9, ad, &tag[..15]),
                Err(AeadError::ShortBuffer)
            );
            let mut frame = ad.to_vec();
            frame.extend_from_slice(&tag);
            assert_eq!(
                c.open_ad_only_frame(KeyUse::Data, 9, &frame).unwrap(),
                &ad[..]
            );
            assert_eq!(
                c.open_ad_only_frame(KeyUse::Data, 9, &frame[..20]),
                Err(AeadError::Authentication)
            );
            assert_eq!(
                c.open_ad_only_frame(KeyUse::Data, 9, &frame[..15]),
                Err(AeadError::ShortBuffer)
            );
        }
    }

    #[test]
    fn boundary_counters() {
        for kind in KINDS {
            let c = SessionCipher::new(kind, &KEY).unwrap();
            let mut buf = [7u8; 4];
            for ctr in [
                0,
                1,
                u32::MAX as u64,
                REHANDSHAKE_AFTER_MESSAGES,
                REJECT_AFTER_MESSAGES - 1,
            ] {
                let mut b = buf;
                let tag = c.seal_in_place(KeyUse::Data, ctr, b"ad", &mut b).unwrap();
                let mut ct = b.to_vec();
                ct.extend_from_slice(&tag);
                assert_eq!(
                    c.open_in_place(KeyUse::Data, ctr, b"ad", &mut ct).unwrap(),
                    &[7u8; 4]
                );
            }
            for ctr in [REJECT_AFTER_MESSAGES, REJECT_AFTER_MESSAGES + 1, u64::MAX] {
                assert_eq!(
                    c.seal_in_place(KeyUse::Data, ctr, b"ad", &mut buf),
                    Err(AeadError::CounterExhausted)
                );
                assert_eq!(
                    c.seal_ad_only(KeyUse::Data, ctr, b"ad"),
                    Err(AeadError::CounterExhausted)
                );
            }
        }
        assert_eq!(REJECT_AFTER_MESSAGES, 0xFFFF_FEFF_FFFF_FFFF);
        assert_eq!(REHANDSHAKE_AFTER_MESSAGES, 17_179_869_184);
    }

    #[test]
    fn session_counters_and_replay() {
        let a = SessionCipher::new(CipherKind::ChaChaPoly, &KEY).unwrap();
        let b = SessionCipher::new(CipherKind::ChaChaPoly, &[3u8; 32]).unwrap();
        let s = Session::new(a, b);
        assert_eq!(s.send_counter(), 2);
        assert_eq!(s.next_counter(), Ok(3));
        assert_eq!(s.next_counter(), Ok(4));
        assert!(!s.needs_rehandshake());

        // A frame from the peer (sealed with our recv key) at counter 3: accepted once.
        let peer = SessionCipher::new(CipherKind::ChaChaPoly, &[3u8; 32]).unwrap();
        let mut frame = [0u8; 16 + 5 + 16];
        frame[16..21].copy_from_slice(b"hello");
        peer.seal_frame(KeyUse::Data, 3, &mut frame, 16).unwrap();
        let mut f1 = frame;
        assert_eq!(
            s.open_frame(KeyUse::Data, 3, &mut f1, 16).unwrap(),
            b"hello"
        );
        let mut f2 = frame;
        assert_eq!(
            s.open_frame(KeyUse::Data, 3, &mut f2, 16),
            Err(AeadError::Replay)
        );
        // Handshake counters are pre-marked.
        let mut f3 = frame;
        assert_eq!(
            s.open_frame(KeyUse::Data, 2, &mut f3, 16),
            Err(AeadError::Replay)
        );
        // A forged frame does not advance the window.
        let mut bad = frame;
        bad[20] ^= 1;
        assert_eq!(
            s.open_frame(KeyUse::Data, 1000, &mut bad, 16),
            Err(AeadError::Authentication)
        );
        assert!(s.replay().check(1000));
        // Relay frame
        let ad = b"relay header and inner";
        let tag = peer.seal_ad_only(KeyUse::Data, 4, ad).unwrap();
        let mut rf = ad.to_vec();
        rf.extend_from_slice(&tag);
        assert_eq!(s.open_ad_only_frame(4, &rf).unwrap(), &ad[..]);
        assert_eq!(s.open_ad_only_frame(4, &rf), Err(AeadError::Replay));
    }

    #[test]
    fn session_counter_exhaustion_pins() {
        let a = SessionCipher::new(CipherKind::AesGcm, &KEY).unwrap();
        let b = SessionCipher::new(CipherKind::AesGcm, &KEY).unwrap();
        let s = Session::new(a, b);
        s.send_counter
            .store(REHANDSHAKE_AFTER_MESSAGES, Ordering::Relaxed);
        assert!(s.needs_rehandshake());
        s.send_counter
            .store(REJECT_AFTER_MESSAGES - 2, Ordering::Relaxed);
        assert_eq!(s.next_counter(), Ok(REJECT_AFTER_MESSAGES - 1));
        assert_eq!(s.next_counter(), Err(AeadError::CounterExhausted));
        assert_eq!(s.send_counter(), REJECT_AFTER_MESSAGES);
        assert_eq!(s.next_counter(), Err(AeadError::CounterExhausted));
        assert_eq!(s.send_counter(), REJECT_AFTER_MESSAGES);
        assert!(s.is_exhausted());
    }
}
