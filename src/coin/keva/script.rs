//! Keva output scripts, read exactly as the Kevacoin ElectrumX fork reads them, and the
//! synthetic "name index" scripts whose script hashes wallets compute themselves.
//!
//! A keva output script is a keva prefix followed by the owner's address script:
//!
//! | op | prefix |
//! |---|---|
//! | `OP_KEVA_NAMESPACE` (0xd0) | `d0 <namespace> <display name> OP_2DROP` |
//! | `OP_KEVA_PUT` (0xd1) | `d1 <namespace> <key> <value> OP_2DROP OP_DROP` |
//! | `OP_KEVA_DELETE` (0xd2) | `d2 <namespace> <key> OP_2DROP` |
//!
//! The fork matches these templates against the ops of the *whole* script: a script that does not
//! decode to the end (a truncated push anywhere) is not keva, and each slot must be a data push
//! (opcodes 0x00–0x4e; `OP_1`… do not count). kevacoind itself is more lenient (any run of drops),
//! but wallets see the fork's index, so the fork's reading is the one to match.

pub(crate) const OP_KEVA_NAMESPACE: u8 = 0xd0;
pub(crate) const OP_KEVA_PUT: u8 = 0xd1;
pub(crate) const OP_KEVA_DELETE: u8 = 0xd2;

const OP_PUSHDATA1: u8 = 0x4c;
const OP_PUSHDATA2: u8 = 0x4d;
const OP_PUSHDATA4: u8 = 0x4e;
const OP_2DROP: u8 = 0x6d;
const OP_DROP: u8 = 0x75;
const OP_RETURN: u8 = 0x6a;

/// The key under which a namespace keeps its profile (display name, JSON with `displayName`).
pub const ROOT_KEY: &[u8] = b"\x01_KEVA_NS_";
/// Social keys: `prefix ‖ target txid in display order`.
pub(crate) const REPLY_PREFIX: [u8; 2] = [0x00, 0x01];
pub(crate) const SHARE_PREFIX: [u8; 2] = [0x00, 0x02];
pub(crate) const LIKE_PREFIX: [u8; 2] = [0x00, 0x03];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `OP_KEVA_NAMESPACE`: registers a namespace with a display name.
    Namespace,
    Put,
    Delete,
}

impl OpKind {
    pub(crate) fn opcode(self) -> u8 {
        match self {
            OpKind::Namespace => OP_KEVA_NAMESPACE,
            OpKind::Put => OP_KEVA_PUT,
            OpKind::Delete => OP_KEVA_DELETE,
        }
    }

    /// The fork's `type` field.
    pub(crate) fn label(self) -> &'static str {
        match self {
            OpKind::Namespace => "REG",
            OpKind::Put => "PUT",
            OpKind::Delete => "DEL",
        }
    }
}

/// One keva operation, as its output script carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KevaOp {
    pub kind: OpKind,
    /// The namespace id: version byte 0x35 ‖ HASH160 (21 bytes on chain; not enforced here).
    pub namespace: Vec<u8>,
    /// The key; for `Namespace`, the display name (the fork's `key` slot).
    pub key: Vec<u8>,
    /// The value, for `Put` only.
    pub value: Option<Vec<u8>>,
}

/// One decoded script op: an opcode, or a data push with its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op<'a> {
    Code(u8),
    Push(&'a [u8]),
}

/// Decodes a whole script; `None` if a push runs past its end (ElectrumX's "truncated script").
fn ops(script: &[u8]) -> Option<Vec<(Op<'_>, usize)>> {
    let mut out = Vec::new();
    let mut n = 0usize;
    while n < script.len() {
        let op = script[n];
        n += 1;
        if op > OP_PUSHDATA4 {
            out.push((Op::Code(op), n));
            continue;
        }
        let len = match op {
            OP_PUSHDATA1 => {
                let l = *script.get(n)? as usize;
                n += 1;
                l
            }
            OP_PUSHDATA2 => {
                let l = u16::from_le_bytes(script.get(n..n + 2)?.try_into().ok()?) as usize;
                n += 2;
                l
            }
            OP_PUSHDATA4 => {
                let l = u32::from_le_bytes(script.get(n..n + 4)?.try_into().ok()?) as usize;
                n += 4;
                l
            }
            direct => direct as usize,
        };
        let data = script.get(n..n.checked_add(len)?)?;
        n += len;
        out.push((Op::Push(data), n));
    }
    Some(out)
}

/// Splits a keva output script into its operation and the length of its keva prefix (the
/// owner's address script is `script[prefix_len..]`). `None` for any other script.
pub fn split(script: &[u8]) -> Option<(KevaOp, usize)> {
    let kind = match *script.first()? {
        OP_KEVA_NAMESPACE => OpKind::Namespace,
        OP_KEVA_PUT => OpKind::Put,
        OP_KEVA_DELETE => OpKind::Delete,
        _ => return None,
    };
    let ops = ops(script)?;
    let (pushes, drops): (usize, &[u8]) = match kind {
        OpKind::Put => (3, &[OP_2DROP, OP_DROP]),
        _ => (2, &[OP_2DROP]),
    };
    let n = 1 + pushes + drops.len();
    if ops.len() < n {
        return None;
    }
    let mut data = Vec::with_capacity(pushes);
    for (op, _) in &ops[1..=pushes] {
        match op {
            Op::Push(d) => data.push(d.to_vec()),
            Op::Code(_) => return None,
        }
    }
    for ((op, _), want) in ops[1 + pushes..n].iter().zip(drops) {
        if *op != Op::Code(*want) {
            return None;
        }
    }
    let prefix_len = ops[n - 1].1;
    let mut data = data.into_iter();
    let op = KevaOp {
        kind,
        namespace: data.next().expect("counted"),
        key: data.next().expect("counted"),
        value: data.next(),
    };
    Some((op, prefix_len))
}

/// Bitcoin's data push, as ElectrumX's `Script.push_data` writes it.
pub(crate) fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    let n = data.len();
    if n < OP_PUSHDATA1 as usize {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([OP_PUSHDATA1, n as u8]);
    } else if n < 0x10000 {
        out.push(OP_PUSHDATA2);
        out.extend((n as u16).to_le_bytes());
    } else {
        out.push(OP_PUSHDATA4);
        out.extend((n as u32).to_le_bytes());
    }
    out.extend_from_slice(data);
}

/// The fork's `build_name_index_script(name)`: `d1 ‖ push(name) ‖ push("") ‖ OP_2DROP OP_DROP
/// OP_RETURN`. It ends in OP_RETURN so it can never be a real output's owner script.
pub(crate) fn index_script(name: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(name.len() + 9);
    s.push(OP_KEVA_PUT);
    push_data(&mut s, name);
    push_data(&mut s, &[]);
    s.extend([OP_2DROP, OP_DROP, OP_RETURN]);
    s
}

/// Python's `\w` (Unicode): letters, numbers of every kind, and the underscore. Rust's regex
/// `\w` also takes combining marks and connector punctuation, which Python's does not.
fn is_py_word(c: char) -> bool {
    use std::sync::OnceLock;
    static WORD: OnceLock<regex::Regex> = OnceLock::new();
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    let re = WORD.get_or_init(|| regex::Regex::new(r"^[\p{L}\p{N}_]$").expect("valid regex"));
    let mut buf = [0u8; 4];
    re.is_match(c.encode_utf8(&mut buf))
}

/// The hashtags of a put, as the fork finds them: `#(\w+)` over the UTF-8 key and value (each
/// decoded on its own, invalid UTF-8 counting as empty) joined without a separator, each tag
/// lower-cased; distinct tags, in order of first appearance.
pub fn hashtags(key: &[u8], value: &[u8]) -> Vec<String> {
    let text: String = [key, value]
        .iter()
        .map(|b| std::str::from_utf8(b).unwrap_or(""))
        .collect();
    let mut tags: Vec<String> = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '#' {
            continue;
        }
        let mut tag = String::new();
        while let Some(&(_, w)) = chars.peek() {
            if !is_py_word(w) {
                break;
            }
            tag.push(w);
            chars.next();
        }
        if tag.is_empty() {
            continue;
        }
        let tag = tag.to_lowercase();
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_templates_split() {
        let ns = [0x35u8; 21];
        let addr = hex::decode("a914965681baf2c68aff9b800e5703a821e13d35c47a87").unwrap();
        let mut put = vec![OP_KEVA_PUT];
        push_data(&mut put, &ns);
        push_data(&mut put, b"k");
        push_data(&mut put, &[0x61; 300]); // PUSHDATA2
        put.extend([OP_2DROP, OP_DROP]);
        let prefix = put.len();
        put.extend(&addr);
        let (op, len) = split(&put).unwrap();
        assert_eq!(len, prefix);
        assert_eq!(op.kind, OpKind::Put);
        assert_eq!(op.value.as_deref(), Some(&[0x61; 300][..]));

        // An empty key is OP_0, a data push.
        let mut del = vec![OP_KEVA_DELETE];
        push_data(&mut del, &ns);
        del.push(0x00);
        del.push(OP_2DROP);
        del.extend(&addr);
        let (op, len) = split(&del).unwrap();
        assert_eq!((op.kind, op.key.len(), len), (OpKind::Delete, 0, 25));
    }

    #[test]
    fn near_misses_are_not_keva() {
        let ns = [0x35u8; 21];
        let mut reg = vec![OP_KEVA_NAMESPACE];
        push_data(&mut reg, &ns);
        push_data(&mut reg, b"name");
        reg.push(OP_2DROP);
        assert!(split(&reg).is_some());
        // OP_1 is not a data push.
        let mut bad = vec![OP_KEVA_NAMESPACE];
        push_data(&mut bad, &ns);
        bad.extend([0x51, OP_2DROP]);
        assert!(split(&bad).is_none());
        // A PUT needs OP_2DROP OP_DROP; OP_2DROP alone is not it.
        let mut put = vec![OP_KEVA_PUT];
        push_data(&mut put, &ns);
        push_data(&mut put, b"k");
        push_data(&mut put, b"v");
        put.push(OP_2DROP);
        assert!(split(&put).is_none());
        // A truncated push anywhere in the script, even after the prefix, voids it.
        let mut trunc = reg.clone();
        trunc.extend([0x14, 0x01]);
        assert!(split(&trunc).is_none());
        assert!(split(&reg[..10]).is_none());
        assert!(split(&[]).is_none());
        assert!(split(&[0x76, 0xa9]).is_none());
    }

    #[test]
    fn index_script_pushes() {
        assert_eq!(hex::encode(index_script(b"keva")), "d1046b657661006d756a");
        let long = index_script(&[7; 80]);
        assert_eq!(&long[..3], &[0xd1, 0x4c, 80]);
        assert_eq!(index_script(&[]), vec![0xd1, 0x00, 0x00, 0x6d, 0x75, 0x6a]);
    }

    #[test]
    fn hashtags_follow_python() {
        assert_eq!(
            hashtags(b"title", b"Hello #Keva world #NFT #keva"),
            vec!["keva", "nft"]
        );
        // Joined without a separator.
        assert_eq!(hashtags(b"a#foo", b"bar baz"), vec!["foobar"]);
        assert_eq!(
            hashtags("x".as_bytes(), "#Kevacoin_2021! #日本語 #über".as_bytes()),
            vec!["kevacoin_2021", "日本語", "über"]
        );
        // Invalid UTF-8 in one half drops that half only.
        assert_eq!(hashtags(&[0xff, b'#', b'a'], b"#b"), vec!["b"]);
        // Python's \w: numbers of every kind yes, combining marks no.
        assert_eq!(
            hashtags(b"", "#x\u{b2}y #e\u{301}t".as_bytes()),
            vec!["x\u{b2}y", "e"]
        );
        assert!(hashtags(b"#", b"# #!").is_empty());
    }
}
