//! What the lighthouse DNS responder answers: the name table (certificate names of hosts that
//! handshook with us, and our own) and the reply datagram for one query, as Go Nebula 1.11 gives.
//!
//! Go's observable rules, kept here:
//! - The server accepts a datagram as `miekg/dns` does: responses are ignored; an opcode other
//!   than QUERY/NOTIFY gets NOTIMP; a question count other than 1 (or more than 1 answer / 1
//!   authority / 2 additional records), or a message that does not parse, gets FORMERR.
//! - The reply copies id, opcode, the first question and (for QUERY) the RD and CD bits; it is
//!   never authoritative, never offers recursion and carries no EDNS record.
//! - A/AAAA: the first address of that family for the name (case-insensitive), TTL 3600, class
//!   IN. A known name without an address of the family is NODATA (NOERROR, no answer).
//! - TXT `<vpn-ip>.`: only for an asker on loopback or on one of our own vpn addresses; the text
//!   is the certificate's JSON, split into strings as Go's zone-file parser splits it. Another
//!   asker gets NOERROR with no answer, whatever the name.
//! - Anything else with no answer and no known name is NXDOMAIN.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

/// Most names the table holds (Go's grows without end). A new name past this is not added.
pub const MAX_NAMES: usize = 1 << 18;

/// The TTL of every record we answer (the default of Go's zone-text record builder).
pub const TTL: u32 = 3600;

/// Largest query datagram read; the rest of a longer one is cut off (as Go's server does).
pub const MAX_QUERY: usize = 512;

/// The first address of each family a name points at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Addrs {
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

/// Names to addresses: what a handshake added (never removed while serving, as in Go), and our
/// own name.
#[derive(Debug, Default)]
pub struct NameTable {
    names: HashMap<String, Addrs>,
    /// The key we last seeded for ourselves.
    self_key: Option<String>,
}

/// The table key of a certificate name: lower case, with the root dot.
fn key_of(cert_name: &str) -> String {
    let mut k = cert_name.to_lowercase();
    k.push('.');
    k
}

/// The first IPv4 and the first IPv6 address of `addrs` (IPv4-mapped IPv6 counts as IPv4).
fn firsts(addrs: &[IpAddr]) -> Addrs {
    let mut a = Addrs::default();
    for ip in addrs {
        match ip.to_canonical() {
            IpAddr::V4(v4) if a.v4.is_none() => a.v4 = Some(v4),
            IpAddr::V6(v6) if a.v6.is_none() => a.v6 = Some(v6),
            _ => {}
        }
    }
    a
}

impl NameTable {
    /// A host named `cert_name` completed a handshake with `vpn_addrs`: point the name at its
    /// first address of each family (a family it lacks keeps what it had). Returns false when
    /// the name is new and the table is full.
    pub fn add(&mut self, cert_name: &str, vpn_addrs: &[IpAddr]) -> bool {
        let new = firsts(vpn_addrs);
        let key = key_of(cert_name);
        if !self.names.contains_key(&key) && self.names.len() >= MAX_NAMES {
            return false;
        }
        let e = self.names.entry(key).or_default();
        if new.v4.is_some() {
            e.v4 = new.v4;
        }
        if new.v6.is_some() {
            e.v6 = new.v6;
        }
        true
    }

    /// Our own certificate says `cert_name` with `vpn_addrs`: replace our previous entry (the
    /// name may have changed with a new certificate).
    pub fn seed_self(&mut self, cert_name: &str, vpn_addrs: &[IpAddr]) {
        let key = key_of(cert_name);
        if let Some(old) = self.self_key.take() {
            self.names.remove(&old);
        }
        self.names.remove(&key);
        self.names.insert(key.clone(), firsts(vpn_addrs));
        self.self_key = Some(key);
    }

    /// Forget everything (DNS was turned off).
    pub fn clear(&mut self) {
        self.names.clear();
        self.self_key = None;
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The address of type `qtype` for the presentation-form `name` (any case, with the root
    /// dot), and whether the name is known at all.
    pub fn lookup(&self, name: &str, qtype: RecordType) -> (Option<IpAddr>, bool) {
        let Some(a) = self.names.get(&name.to_lowercase()) else {
            return (None, false);
        };
        let ip = match qtype {
            RecordType::A => a.v4.map(IpAddr::V4),
            RecordType::AAAA => a.v6.map(IpAddr::V6),
            _ => None,
        };
        (ip, true)
    }
}

/// What the TXT answers need from the node.
pub trait CertSource {
    /// May `asker` read certificates (loopback, or one of our own vpn addresses)?
    fn may_read_certs(&self, asker: IpAddr) -> bool;
    /// Go's JSON of the certificate for `vpn_addr`: ours, or that of the host we have a tunnel
    /// with; `None` if neither.
    fn cert_json(&self, vpn_addr: IpAddr) -> Option<String>;
}

/// The reply to the datagram `request` from `asker`, or `None` when Go sends nothing (too short
/// for a header, or not a query).
pub fn respond(
    request: &[u8],
    asker: IpAddr,
    table: &NameTable,
    certs: &dyn CertSource,
) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(request)).ok()?;
    if header.message_type() == MessageType::Response {
        return None;
    }
    if !matches!(header.op_code(), OpCode::Query | OpCode::Notify) {
        return encode(&refusal(&header, ResponseCode::NotImp));
    }
    if header.query_count() != 1
        || header.answer_count() > 1
        || header.name_server_count() > 1
        || header.additional_count() > 2
    {
        return encode(&refusal(&header, ResponseCode::FormErr));
    }
    let Ok(query) = Message::from_vec(request) else {
        return encode(&refusal(&header, ResponseCode::FormErr));
    };
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code());
    if query.op_code() == OpCode::Query {
        reply
            .set_recursion_desired(query.recursion_desired())
            .set_checking_disabled(query.checking_disabled());
    }
    if let Some(q) = query.queries().first() {
        reply.add_query(q.clone());
        if query.op_code() == OpCode::Query {
            answer(&mut reply, q.name(), q.query_type(), asker, table, certs);
        }
    }
    encode(&reply)
}

/// Fill in the answer (or NXDOMAIN) for one question.
fn answer(
    reply: &mut Message,
    name: &Name,
    qtype: RecordType,
    asker: IpAddr,
    table: &NameTable,
    certs: &dyn CertSource,
) {
    let text = name.to_ascii();
    let mut name_exists = false;
    match qtype {
        RecordType::A | RecordType::AAAA => {
            tracing::debug!(r#type = %qtype, name = %text, "DNS query");
            let (ip, exists) = table.lookup(&text, qtype);
            name_exists = exists;
            let rdata = match ip {
                Some(IpAddr::V4(v4)) => Some(RData::A(A(v4))),
                Some(IpAddr::V6(v6)) => Some(RData::AAAA(AAAA(v6))),
                None => None,
            };
            if let Some(rdata) = rdata {
                reply.add_answer(record(name, rdata));
            }
        }
        RecordType::TXT => {
            if !certs.may_read_certs(asker) {
                // Go stops here: no answer, and no NXDOMAIN either.
                return;
            }
            tracing::debug!(r#type = "TXT", name = %text, "DNS query");
            let json = text
                .strip_suffix('.')
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .and_then(|ip| certs.cert_json(ip));
            if let Some(strings) = json.as_deref().and_then(zone_txt_strings) {
                let refs: Vec<&[u8]> = strings.iter().map(Vec::as_slice).collect();
                reply.add_answer(record(name, RData::TXT(TXT::from_bytes(refs))));
            }
        }
        _ => {}
    }
    if reply.answers().is_empty() && !name_exists {
        reply.set_response_code(ResponseCode::NXDomain);
    }
}

fn record(name: &Name, rdata: RData) -> Record {
    let mut r = Record::from_rdata(name.clone(), TTL, rdata);
    r.set_dns_class(DNSClass::IN);
    r
}

/// Go's reply to a message its server refuses before the handler: the request's header with QR
/// set, AA and Z cleared, the opcode QUERY (kept for NOTIMP) and no sections.
fn refusal(h: &Header, code: ResponseCode) -> Message {
    let mut m = Message::new();
    let op = if code == ResponseCode::NotImp {
        h.op_code()
    } else {
        OpCode::Query
    };
    m.set_id(h.id())
        .set_message_type(MessageType::Response)
        .set_op_code(op)
        .set_authoritative(false)
        .set_truncated(h.truncated())
        .set_recursion_desired(h.recursion_desired())
        .set_recursion_available(h.recursion_available())
        .set_authentic_data(h.authentic_data())
        .set_checking_disabled(h.checking_disabled())
        .set_response_code(code);
    m
}

/// The message's bytes, names uncompressed (as Go sends them).
fn encode(m: &Message) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_canonical_names(true);
    m.emit(&mut enc).ok()?;
    Some(buf)
}

/// The character-strings Go's zone-file parser makes of `text` as TXT data (Go builds the TXT
/// answer from the text `"<name> TXT <json>"`): each run between double quotes is one string,
/// and so is each blank-separated run outside them; `""` is an empty string; a string longer
/// than 255 bytes is cut into 255-byte pieces; `\X` and `\DDD` escapes are decoded; `;` outside
/// quotes ends the data. `None` where Go's parser fails (an open quote or brace, a dangling `\`).
pub fn zone_txt_strings(text: &str) -> Option<Vec<Vec<u8>>> {
    enum Tok {
        Str(Vec<u8>),
        Quote,
    }
    let mut toks = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let (mut quote, mut escape, mut braces) = (false, false, 0i32);
    let flush = |cur: &mut Vec<u8>, toks: &mut Vec<Tok>| {
        if !cur.is_empty() {
            toks.push(Tok::Str(std::mem::take(cur)));
        }
    };
    for &b in text.as_bytes() {
        if escape {
            cur.push(b);
            escape = false;
            continue;
        }
        match b {
            b'\\' => {
                cur.push(b);
                escape = true;
            }
            b'"' => {
                flush(&mut cur, &mut toks);
                toks.push(Tok::Quote);
                quote = !quote;
            }
            b' ' | b'\t' if !quote => flush(&mut cur, &mut toks),
            b';' if !quote => break,
            b'\n' | b'\r' if !quote => break,
            b'(' | b')' if !quote => {
                flush(&mut cur, &mut toks);
                braces += if b == b'(' { 1 } else { -1 };
                if braces < 0 {
                    return None;
                }
            }
            _ => cur.push(b),
        }
    }
    if escape || quote || braces != 0 {
        return None;
    }
    flush(&mut cur, &mut toks);
    let mut out = Vec::new();
    let (mut in_quote, mut empty) = (false, false);
    for t in toks {
        match t {
            Tok::Str(raw) => {
                empty = false;
                let bytes = unescape(&raw)?;
                if bytes.is_empty() {
                    out.push(bytes);
                } else {
                    out.extend(bytes.chunks(255).map(<[u8]>::to_vec));
                }
            }
            Tok::Quote => {
                if empty && in_quote {
                    out.push(Vec::new());
                }
                in_quote = !in_quote;
                empty = true;
            }
        }
    }
    Some(out)
}

/// Decode zone-file escapes: `\DDD` (decimal byte) and `\X` (X itself).
fn unescape(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let rest = raw.get(i + 1..)?;
        let ddd = rest.get(..3).filter(|d| d.iter().all(u8::is_ascii_digit));
        match ddd {
            Some(d) => {
                let n = d.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0'));
                out.push(u8::try_from(n).unwrap_or(u8::MAX));
                i += 4;
            }
            None => {
                out.push(*rest.first()?);
                i += 2;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    /// Loopback and 10.1.0.1 (ours) may read certificates; 10.1.0.2 has one.
    struct Certs;
    impl CertSource for Certs {
        fn may_read_certs(&self, asker: IpAddr) -> bool {
            asker.is_loopback() || asker == IpAddr::from([10, 1, 0, 1])
        }
        fn cert_json(&self, vpn: IpAddr) -> Option<String> {
            (vpn == IpAddr::from([10, 1, 0, 2]))
                .then(|| r#"{"details":{"groups":[],"name":"Host Two"},"version":1}"#.into())
        }
    }

    const OUTSIDER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));

    fn table() -> NameTable {
        let mut t = NameTable::default();
        t.seed_self("lighthouse", &["10.1.0.1".parse().expect("ip")]);
        t.add(
            "Host-Two",
            &[
                "10.1.0.2".parse().expect("ip"),
                "fd00::2".parse().expect("ip"),
            ],
        );
        t.add("v4only", &["10.1.0.3".parse().expect("ip")]);
        t
    }

    fn ask(name: &str, qtype: RecordType, from: IpAddr) -> Message {
        let mut q = Message::new();
        q.set_id(0x4242).set_recursion_desired(true);
        q.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        let bytes = q.to_vec().expect("encode");
        let reply = respond(&bytes, from, &table(), &Certs).expect("a reply");
        Message::from_vec(&reply).expect("reply parses")
    }

    fn addrs(m: &Message) -> Vec<String> {
        m.answers().iter().map(|r| r.data().to_string()).collect()
    }

    #[test]
    fn a_and_aaaa_for_a_known_name() {
        let m = ask("host-two.", RecordType::A, OUTSIDER);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert_eq!(addrs(&m), ["10.1.0.2"]);
        assert_eq!(m.answers()[0].ttl(), TTL);
        assert_eq!(m.id(), 0x4242);
        assert!(m.recursion_desired() && !m.recursion_available() && !m.authoritative());
        assert_eq!(m.message_type(), MessageType::Response);
        let m = ask("host-two.", RecordType::AAAA, OUTSIDER);
        assert_eq!(addrs(&m), ["fd00::2"]);
    }

    #[test]
    fn mixed_case_matches_and_the_answer_keeps_the_askers_case() {
        let m = ask("HoSt-TwO.", RecordType::A, OUTSIDER);
        assert_eq!(addrs(&m), ["10.1.0.2"]);
        assert_eq!(m.answers()[0].name().to_ascii(), "HoSt-TwO.");
        assert_eq!(m.queries()[0].name().to_ascii(), "HoSt-TwO.");
    }

    #[test]
    fn our_own_name_answers() {
        assert_eq!(
            addrs(&ask("lighthouse.", RecordType::A, OUTSIDER)),
            ["10.1.0.1"]
        );
    }

    #[test]
    fn known_name_without_the_family_is_nodata_unknown_is_nxdomain() {
        let m = ask("v4only.", RecordType::AAAA, OUTSIDER);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        // Go looks names up for A and AAAA only: any other type is NXDOMAIN, known name or not.
        let m = ask("v4only.", RecordType::MX, OUTSIDER);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        let m = ask("nobody.", RecordType::A, OUTSIDER);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert!(m.answers().is_empty());
    }

    #[test]
    fn txt_only_for_local_askers() {
        for local in [IpAddr::from([127, 0, 0, 1]), IpAddr::from([10, 1, 0, 1])] {
            let m = ask("10.1.0.2.", RecordType::TXT, local);
            assert_eq!(m.response_code(), ResponseCode::NoError);
            assert_eq!(m.answers().len(), 1);
            let RData::TXT(txt) = m.answers()[0].data() else {
                panic!("not a TXT answer: {m:?}");
            };
            let parts: Vec<&[u8]> = txt.iter().map(|b| &b[..]).collect();
            let want: [&[u8]; 11] = [
                b"{",
                b"details",
                b":{",
                b"groups",
                b":[],",
                b"name",
                b":",
                b"Host Two",
                b"},",
                b"version",
                b":1}",
            ];
            assert_eq!(parts, want);
            // Unknown address from a local asker: NXDOMAIN.
            let m = ask("10.1.0.9.", RecordType::TXT, local);
            assert_eq!(m.response_code(), ResponseCode::NXDomain);
        }
        // Anyone else: NOERROR, nothing, even for an address we know.
        for outsider in [OUTSIDER, IpAddr::from([10, 1, 0, 2])] {
            let m = ask("10.1.0.2.", RecordType::TXT, outsider);
            assert_eq!(m.response_code(), ResponseCode::NoError);
            assert!(m.answers().is_empty());
        }
    }

    #[test]
    fn zone_text_splitting_follows_gos_parser() {
        let s = |t: &str| {
            zone_txt_strings(t).map(|v| {
                v.into_iter()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            s(r#"a "b c" """#),
            Some(vec!["a".into(), "b c".into(), "".into()])
        );
        assert_eq!(s(r#"x\065\"y"#), Some(vec!["xA\"y".into()]));
        assert_eq!(s("a;comment"), Some(vec!["a".into()]));
        assert_eq!(s(r#""open"#), None);
        assert_eq!(s("a)"), None);
        let long = "z".repeat(600);
        assert_eq!(
            zone_txt_strings(&long).map(|v| v.iter().map(Vec::len).collect::<Vec<_>>()),
            Some(vec![255, 255, 90])
        );
    }

    #[test]
    fn refusals_as_gos_server_gives_them() {
        // Two questions: FORMERR, no sections, id kept.
        let mut q = Message::new();
        q.set_id(7);
        q.add_query(Query::query(
            Name::from_ascii("a.").expect("name"),
            RecordType::A,
        ));
        q.add_query(Query::query(
            Name::from_ascii("b.").expect("name"),
            RecordType::A,
        ));
        let r = respond(&q.to_vec().expect("encode"), OUTSIDER, &table(), &Certs).expect("reply");
        let r = Message::from_vec(&r).expect("parses");
        assert_eq!((r.id(), r.response_code()), (7, ResponseCode::FormErr));
        assert!(r.queries().is_empty());
        // An UPDATE: NOTIMP with the opcode kept.
        let mut q = Message::new();
        q.set_op_code(OpCode::Update);
        q.add_query(Query::query(
            Name::from_ascii("a.").expect("name"),
            RecordType::SOA,
        ));
        let r = respond(&q.to_vec().expect("encode"), OUTSIDER, &table(), &Certs).expect("reply");
        let r = Message::from_vec(&r).expect("parses");
        assert_eq!(
            (r.op_code(), r.response_code()),
            (OpCode::Update, ResponseCode::NotImp)
        );
        // A response is ignored.
        let mut q = Message::new();
        q.set_message_type(MessageType::Response);
        assert!(respond(&q.to_vec().expect("encode"), OUTSIDER, &table(), &Certs).is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let t = table();
        assert!(respond(&[], OUTSIDER, &t, &Certs).is_none());
        assert!(respond(&[1, 2, 3], OUTSIDER, &t, &Certs).is_none());
        // A header claiming one question that is not there: FORMERR.
        let r = respond(&[0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0], OUTSIDER, &t, &Certs);
        let r = Message::from_vec(&r.expect("reply")).expect("parses");
        assert_eq!(r.response_code(), ResponseCode::FormErr);
        let mut state = 0x1234_5678u32;
        for len in 0..600 {
            let mut buf = vec![0u8; len % 80];
            for b in &mut buf {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *b = state as u8;
            }
            if buf.len() > 5 {
                buf[2] &= 0x07; // a query, opcode 0
                buf[4] = 0;
                buf[5] = 1;
            }
            let _ = respond(&buf, OUTSIDER, &t, &Certs);
        }
    }

    #[test]
    fn table_is_bounded_and_seeding_replaces_our_old_name() {
        let mut t = NameTable::default();
        t.seed_self("old", &["10.1.0.1".parse().expect("ip")]);
        t.seed_self("new", &["10.1.0.1".parse().expect("ip")]);
        assert_eq!(t.lookup("old.", RecordType::A), (None, false));
        assert!(t.lookup("NEW.", RecordType::A).1);
        for i in 0..MAX_NAMES {
            t.add(&format!("h{i}"), &["10.1.0.5".parse().expect("ip")]);
        }
        assert_eq!(t.len(), MAX_NAMES);
        assert!(!t.add("one-too-many", &["10.1.0.6".parse().expect("ip")]));
        assert!(t.add("h1", &["fd00::1".parse().expect("ip")]));
        assert_eq!(
            t.lookup("h1.", RecordType::AAAA).0,
            Some("fd00::1".parse().expect("ip"))
        );
        assert_eq!(
            t.lookup("h1.", RecordType::A).0,
            Some("10.1.0.5".parse().expect("ip"))
        );
        t.clear();
        assert!(t.is_empty());
    }
}
