//! TLS 1.3 application traffic after the handshake, without rustls's
//! per-connection record layer (sans-IO: records in, plaintext and records
//! out).
//!
//! Once a TLS 1.3 handshake is done the connection hands its keys over
//! (`UnbufferedServerConnection::dangerous_into_kernel_connection`, rustls's
//! API for kTLS) and keeps only the raw traffic keys, IVs and sequence
//! numbers ([`Traffic`]). The AEAD contexts (aws-lc's key schedule and GHASH
//! table, 584 bytes per direction) are built by the turn that needs them
//! and dropped with it, so an idle `wss://` connection does not hold them,
//! nor rustls's 1,088-byte connection struct (BENCHMARKS.md, "TLS"). What
//! rustls still does: everything up to the end of the handshake, the
//! tickets it sends, and new traffic secrets on a KeyUpdate
//! ([`KernelConnection`]). TLS 1.2 connections stay with rustls throughout.
//!
//! The record layer, RFC 8446 5.2-5.4 and 4.6.3: records of type
//! application_data (23) with the 5-byte header as additional data, the
//! nonce is the IV XOR the 64-bit sequence number, the inner plaintext ends
//! with its content type followed by zero padding. Received: application
//! data is handed over, close_notify ends the stream, user_canceled is
//! ignored, any other alert is fatal; the only handshake message accepted
//! is a KeyUpdate, whole in its record and last in it (a client that
//! fragments one is refused with decode_error: rustls's clients, browsers
//! and OpenSSL never do); one or more with update_requested are answered by
//! one KeyUpdate of ours before our next data record. A peer gets at most
//! 32 KeyUpdates, 32 empty records and 4 user_canceled warnings in a row
//! without data between them (rustls's limits, after BoringSSL): each costs
//! work and brings nothing. Sent: data in records of at most
//! 16 KiB, our KeyUpdate every 2^24 records (AES-GCM's limit, RFC 8446
//! 5.5), close_notify and fatal alerts. Every failure names the alert to
//! send ([`Fatal`]).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::aead::{
    Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305, NONCE_LEN,
};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{AlertDescription, ConnectionTrafficSecrets, ExtractedSecrets};
use zeroize::Zeroize;

/// Record header: type, legacy version, length.
pub(super) const HEADER: usize = 5;
/// AEAD tag of every suite here.
const TAG: usize = 16;
/// Largest plaintext fragment (RFC 8446 5.1: 2^14 bytes).
pub(super) const MAX_FRAGMENT: usize = 16 << 10;
/// Largest TLSCiphertext.length (RFC 8446 5.2: 2^14 + 256).
const MAX_CIPHERTEXT: usize = MAX_FRAGMENT + 256;
/// Records sealed under one key before we send a KeyUpdate.
const REKEY_AFTER: u64 = 1 << 24;
/// KeyUpdates, empty data records and warning alerts a peer may send in a
/// row (without data between them) before it is cut off, as rustls
/// (after BoringSSL): each costs work and returns nothing.
const MAX_KEY_UPDATES: u8 = 32;
const MAX_EMPTY_RECORDS: u8 = 32;
const MAX_WARNINGS: u8 = 4;

pub(super) const APPLICATION_DATA: u8 = 23;
const HANDSHAKE: u8 = 22;
const ALERT: u8 = 21;
const KEY_UPDATE: u8 = 24;

/// A fatal error of the record layer: the alert to send, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fatal {
    /// `None`: the peer sent a fatal alert (nothing is sent back).
    pub alert: Option<AlertDescription>,
    pub why: &'static str,
}

fn fatal(alert: AlertDescription, why: &'static str) -> Fatal {
    Fatal { alert: Some(alert), why }
}

/// What one record held.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Application data: this range of the buffer the record was in.
    Data(Range<usize>),
    /// The peer's close_notify.
    Closed,
    /// Nothing for the caller (a KeyUpdate, user_canceled).
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Alg {
    /// The AEAD of TLS 1.3 suite `suite`, if this layer runs it.
    fn of(suite: rustls::CipherSuite) -> Option<Alg> {
        use rustls::CipherSuite as S;
        match suite {
            S::TLS13_AES_128_GCM_SHA256 => Some(Alg::Aes128Gcm),
            S::TLS13_AES_256_GCM_SHA384 => Some(Alg::Aes256Gcm),
            S::TLS13_CHACHA20_POLY1305_SHA256 => Some(Alg::Chacha20Poly1305),
            _ => None,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Alg::Aes128Gcm => 16,
            Alg::Aes256Gcm | Alg::Chacha20Poly1305 => 32,
        }
    }

    fn aead(self) -> &'static aws_lc_rs::aead::Algorithm {
        match self {
            Alg::Aes128Gcm => &AES_128_GCM,
            Alg::Aes256Gcm => &AES_256_GCM,
            Alg::Chacha20Poly1305 => &CHACHA20_POLY1305,
        }
    }
}

/// One direction's key, IV and next sequence number.
struct Direction {
    key: [u8; 32],
    iv: [u8; NONCE_LEN],
    seq: u64,
}

impl Drop for Direction {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl Direction {
    fn new(alg: Alg, seq: u64, secrets: ConnectionTrafficSecrets) -> Option<Direction> {
        let (got, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Alg::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Alg::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Alg::Chacha20Poly1305, key, iv)
            }
            _ => return None,
        };
        let (k, i) = (key.as_ref(), iv.as_ref());
        if got != alg || k.len() != alg.key_len() || i.len() != NONCE_LEN {
            return None;
        }
        let mut d = Direction { key: [0; 32], iv: [0; NONCE_LEN], seq };
        d.key[..k.len()].copy_from_slice(k);
        d.iv.copy_from_slice(i);
        Some(d)
    }

    /// The AEAD context, built for this turn (aws-lc expands the key).
    fn context(&self, alg: Alg) -> Result<LessSafeKey, Fatal> {
        UnboundKey::new(alg.aead(), &self.key[..alg.key_len()])
            .map(LessSafeKey::new)
            .map_err(|_| fatal(AlertDescription::InternalError, "AEAD key refused"))
    }

    /// This record's nonce (RFC 8446 5.3), and the sequence number moved on.
    fn next_nonce(&mut self) -> Result<Nonce, Fatal> {
        let mut n = self.iv;
        for (b, s) in n[NONCE_LEN - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or(fatal(AlertDescription::InternalError, "record sequence number exhausted"))?;
        Ok(Nonce::assume_unique_for_key(n))
    }
}

/// The AEAD contexts a worker built last, for one connection at a time
/// (`owner`, a [`Traffic`]'s id, never reused): a connection's next turn
/// finds them if no other connection's came in between.
#[derive(Default)]
pub struct TurnKeys {
    owner: u64,
    open: Option<LessSafeKey>,
    seal: Option<LessSafeKey>,
}

impl TurnKeys {
    /// Keeps the contexts if they are `id`'s, else forgets them.
    fn claim(&mut self, id: u64) {
        if self.owner != id {
            *self = TurnKeys { owner: id, open: None, seal: None };
        }
    }
}

/// Ids of [`Traffic`] connections, from 1 (0: [`TurnKeys`] of nobody).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Entries of a worker's [`KeyCache`].
const CACHED_CONNECTIONS: usize = 256;

/// The AEAD contexts of a worker's most recently active TLS 1.3
/// connections, direct-mapped by connection id (ids are handed out in
/// order, so up to 256 connections that take turns keep theirs): at most
/// 256 x 2 x 584 bytes per worker however many connections are idle.
#[derive(Default)]
pub struct KeyCache {
    slots: Vec<TurnKeys>,
}

impl KeyCache {
    /// The entry for connection `t` (emptied if another one had it).
    pub fn of(&mut self, t: &Traffic) -> &mut TurnKeys {
        if self.slots.is_empty() {
            self.slots.resize_with(CACHED_CONNECTIONS, TurnKeys::default);
        }
        let k = &mut self.slots[(t.id % CACHED_CONNECTIONS as u64) as usize];
        k.claim(t.id);
        k
    }

    /// Drops the contexts of connection `t` (it is closing).
    pub fn forget(&mut self, t: &Traffic) {
        if let Some(k) = self.slots.get_mut((t.id % CACHED_CONNECTIONS as u64) as usize) {
            if k.owner == t.id {
                *k = TurnKeys::default();
            }
        }
    }
}

/// A TLS 1.3 connection after its handshake: keys and sequence numbers,
/// and rustls's remainder for key updates.
pub struct Traffic {
    /// Unique in the process: which [`TurnKeys`] are this connection's.
    id: u64,
    kernel: KernelConnection<ServerConnectionData>,
    alg: Alg,
    tx: Direction,
    rx: Direction,
    /// The peer asked for our KeyUpdate: it goes before our next data
    /// record (one for any number of requests, RFC 8446 4.6.3).
    reply_owed: bool,
    /// Records in a row that brought no data, by kind.
    key_updates: u8,
    empty_records: u8,
    warnings: u8,
}

/// This layer runs connections of `suite`.
pub fn supports(suite: rustls::CipherSuite) -> bool {
    Alg::of(suite).is_some()
}

impl Traffic {
    /// From what rustls hands over at the end of a TLS 1.3 handshake; `None`
    /// for a suite this layer does not know.
    pub fn new(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
    ) -> Option<Traffic> {
        let alg = Alg::of(kernel.negotiated_cipher_suite().suite())?;
        let ExtractedSecrets { tx: (tx_seq, tx), rx: (rx_seq, rx) } = secrets;
        let tx = Direction::new(alg, tx_seq, tx)?;
        let rx = Direction::new(alg, rx_seq, rx)?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Some(Traffic {
            id,
            kernel,
            alg,
            tx,
            rx,
            reply_owed: false,
            key_updates: 0,
            empty_records: 0,
            warnings: 0,
        })
    }

    /// Opens the record at the start of `buf` in place. `Ok(None)`: `buf`
    /// does not hold a whole record yet. Otherwise the bytes the record took
    /// and what it held (a KeyUpdate asking for ours is answered before our
    /// next data record, [`Traffic::seal_data`]).
    pub fn open(
        &mut self,
        keys: &mut TurnKeys,
        buf: &mut [u8],
    ) -> Result<Option<(usize, Opened)>, Fatal> {
        keys.claim(self.id);
        if buf.len() < HEADER {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
        if len > MAX_CIPHERTEXT {
            return Err(fatal(AlertDescription::RecordOverflow, "record longer than 2^14 + 256"));
        }
        if buf[0] != APPLICATION_DATA {
            return Err(fatal(
                AlertDescription::UnexpectedMessage,
                "record other than application_data after the handshake",
            ));
        }
        let total = HEADER + len;
        if buf.len() < total {
            return Ok(None);
        }
        if len < TAG + 1 {
            return Err(fatal(AlertDescription::DecodeError, "record shorter than its tag"));
        }
        let (head, rest) = buf.split_at_mut(HEADER);
        let key = match &mut keys.open {
            Some(k) => k,
            empty => empty.insert(self.rx.context(self.alg)?),
        };
        let nonce = self.rx.next_nonce()?;
        let plain = key
            .open_in_place(nonce, Aad::from(&head[..]), &mut rest[..len])
            .map_err(|_| fatal(AlertDescription::BadRecordMac, "record failed to decrypt"))?;
        // Content type: the last non-zero byte; zeros after it are padding.
        let Some(end) = plain.iter().rposition(|&b| b != 0) else {
            return Err(fatal(
                AlertDescription::UnexpectedMessage,
                "record without a content type",
            ));
        };
        // RFC 8446 5.4: TLSInnerPlaintext (content, type, padding) at most
        // 2^14 + 1 bytes.
        if plain.len() > MAX_FRAGMENT + 1 {
            return Err(fatal(AlertDescription::RecordOverflow, "plaintext longer than 2^14"));
        }
        let content = &plain[..end];
        let opened = match plain[end] {
            APPLICATION_DATA if end == 0 => {
                self.empty_records += 1;
                if self.empty_records > MAX_EMPTY_RECORDS {
                    return Err(fatal(
                        AlertDescription::UnexpectedMessage,
                        "too many empty records",
                    ));
                }
                Opened::Nothing
            }
            APPLICATION_DATA => {
                (self.key_updates, self.empty_records, self.warnings) = (0, 0, 0);
                Opened::Data(HEADER..HEADER + end)
            }
            ALERT | HANDSHAKE if end == 0 => {
                return Err(fatal(
                    AlertDescription::UnexpectedMessage,
                    "empty alert or handshake record",
                ))
            }
            ALERT => self.alert(content)?,
            HANDSHAKE => {
                self.handshake(content)?;
                keys.open = None;
                Opened::Nothing
            }
            _ => return Err(fatal(AlertDescription::UnexpectedMessage, "unexpected content type")),
        };
        Ok(Some((total, opened)))
    }

    fn alert(&mut self, content: &[u8]) -> Result<Opened, Fatal> {
        let [_level, desc] = content else {
            return Err(fatal(AlertDescription::DecodeError, "alert record not two bytes"));
        };
        match AlertDescription::from(*desc) {
            AlertDescription::CloseNotify => Ok(Opened::Closed),
            AlertDescription::UserCanceled => {
                self.warnings += 1;
                if self.warnings > MAX_WARNINGS {
                    return Err(fatal(AlertDescription::UnexpectedMessage, "too many warnings"));
                }
                Ok(Opened::Nothing)
            }
            _ => Err(Fatal { alert: None, why: "the peer sent a fatal alert" }),
        }
    }

    /// A post-handshake message: only a KeyUpdate, whole and alone. The
    /// caller drops its opening context (the receive key changed).
    fn handshake(&mut self, content: &[u8]) -> Result<(), Fatal> {
        let request = match content {
            [KEY_UPDATE, 0, 0, 1, request] => *request,
            // RFC 8446 5.1: a key change must end its record.
            [KEY_UPDATE, 0, 0, 1, _, _, ..] => {
                return Err(fatal(
                    AlertDescription::UnexpectedMessage,
                    "KeyUpdate not at the end of its record",
                ))
            }
            [KEY_UPDATE, ..] => {
                return Err(fatal(
                    AlertDescription::DecodeError,
                    "KeyUpdate not whole in its record",
                ))
            }
            _ => {
                return Err(fatal(
                    AlertDescription::UnexpectedMessage,
                    "handshake message after the handshake other than KeyUpdate",
                ))
            }
        };
        if request > 1 {
            return Err(fatal(AlertDescription::IllegalParameter, "KeyUpdate request not 0 or 1"));
        }
        self.key_updates += 1;
        if self.key_updates > MAX_KEY_UPDATES {
            return Err(fatal(AlertDescription::UnexpectedMessage, "too many KeyUpdates"));
        }
        let (seq, secrets) = self
            .kernel
            .update_rx_secret()
            .map_err(|_| fatal(AlertDescription::InternalError, "receive key update failed"))?;
        self.rx = Direction::new(self.alg, seq, secrets)
            .ok_or(fatal(AlertDescription::InternalError, "receive key update failed"))?;
        self.reply_owed |= request == 1;
        Ok(())
    }

    /// Sends our KeyUpdate (update_not_requested) under the current key,
    /// then moves to the next one.
    fn key_update(&mut self, keys: &mut TurnKeys, out: &mut Vec<u8>) -> Result<(), Fatal> {
        self.seal(keys, HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], out)?;
        let (seq, secrets) = self
            .kernel
            .update_tx_secret()
            .map_err(|_| fatal(AlertDescription::InternalError, "send key update failed"))?;
        self.tx = Direction::new(self.alg, seq, secrets)
            .ok_or(fatal(AlertDescription::InternalError, "send key update failed"))?;
        keys.seal = None;
        Ok(())
    }

    /// Appends `plain` to `out` as application data records of at most
    /// 16 KiB of plaintext each.
    pub fn seal_data(
        &mut self,
        keys: &mut TurnKeys,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Fatal> {
        keys.claim(self.id);
        if std::mem::take(&mut self.reply_owed) {
            self.key_update(keys, out)?;
        }
        for part in plain.chunks(MAX_FRAGMENT) {
            if self.tx.seq >= REKEY_AFTER {
                self.key_update(keys, out)?;
            }
            self.seal(keys, APPLICATION_DATA, part, out)?;
        }
        Ok(())
    }

    /// Appends the alert record `desc` (close_notify, or a fatal one).
    pub fn seal_alert(&mut self, keys: &mut TurnKeys, desc: AlertDescription, out: &mut Vec<u8>) {
        keys.claim(self.id);
        let level = if desc == AlertDescription::CloseNotify { 1 } else { 2 };
        // Nothing more can be said if even this fails; the caller closes.
        let _ = self.seal(keys, ALERT, &[level, u8::from(desc)], out);
    }

    /// Appends one record of `content_type` holding `plain` (at most 16 KiB).
    fn seal(
        &mut self,
        keys: &mut TurnKeys,
        content_type: u8,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Fatal> {
        let len = plain.len() + 1 + TAG;
        let at = out.len();
        out.extend_from_slice(&[APPLICATION_DATA, 3, 3]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(plain);
        out.push(content_type);
        let sealed = (|| {
            let key = match &mut keys.seal {
                Some(k) => k,
                empty => empty.insert(self.tx.context(self.alg)?),
            };
            let nonce = self.tx.next_nonce()?;
            let (head, body) = out[at..].split_at_mut(HEADER);
            key.seal_in_place_separate_tag(nonce, Aad::from(&head[..]), body)
                .map_err(|_| fatal(AlertDescription::InternalError, "record failed to encrypt"))
        })();
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(f) => {
                // No plaintext may stay behind in what is sent.
                out.truncate(at);
                Err(f)
            }
        }
    }
}
