//! x_tables rules as `iptables-save` text, decoded from the kernel's bytes: no fork.
//!
//! Owns turning what the kernel holds for an iptables rule into the exact line the save tools
//! print (`-A CHAIN … -m NAME … -j TARGET …`), so rule text can be read over `getsockopt` (legacy)
//! and nf_tables netlink (iptables-nft) and handed to `nfscope-ruleset`'s parser like the save
//! tools' output. [`ext`] decodes one extension's payload (`xt_entry_match` / `xt_entry_target`
//! data, the same structures in both backends); the readers assemble the rest of the line (the
//! legacy `ipt_ip` header, iptables-nft's native expressions, verdicts and jumps). A payload this
//! module cannot render exactly is [`ext::Unsupported`], never a guess: the reader then falls back
//! to the save tool and counts it. It does not parse text, and reads the kernel only in
//! [`decode_legacy_tables`] (the readers hand it tables they read).

pub(crate) mod ext;
pub(crate) mod legacy_line;

use std::io;

use nfscope_ruleset::Family;

pub use legacy_line::Undecoded;

/// One legacy table's text as decoded from the kernel's bytes: `Ok` is exactly what
/// `ip[6]tables-legacy-save -t NAME` prints (without its `#` lines); `Err` says which rules
/// are not modelled (the reader falls back to the save tool for such a table).
#[derive(Debug, Clone)]
pub struct DecodedTable {
    /// The table's name.
    pub name: String,
    /// Its text, or why it could not be decoded.
    pub text: Result<String, Vec<Undecoded>>,
}

/// Reads every legacy table of `family` in `netns` (the calling thread's when `None`) over
/// `getsockopt` and decodes each one's text: what the reader does on a change, exposed for the
/// equality tests against the save tools and for diagnostics.
pub fn decode_legacy_tables(netns: Option<&str>, family: Family) -> io::Result<Vec<DecodedTable>> {
    crate::run_in_netns(netns, || {
        let sock = crate::netlink::legacy::XtSocket::open(family)?;
        let mut out = Vec::new();
        for name in crate::rules::legacy_table_names(family)? {
            let table = match sock.read_table(&name)? {
                Some(table) => table,
                None if sock.info(&name)?.is_none() => continue, // gone since listed
                None => return Err(io::Error::other(format!("{name}: replaced while read"))),
            };
            let mut text = String::new();
            let text = legacy_line::table_text(&table, family, false, &mut text).map(|()| text);
            out.push(DecodedTable { name, text });
        }
        Ok(out)
    })?
}
