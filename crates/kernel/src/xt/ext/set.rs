//! The `set` match (`xt_set_info_match_v{1,3,4}`): the kernel stores the ipset's index, so the
//! name is asked of the kernel (`SO_IP_SET` / `IP_SET_OP_GET_BYINDEX`, as `iptables-save` does)
//! in the calling thread's namespace.

use std::fmt::Write as _;
use std::os::fd::AsFd;

use nfscope_ruleset::Family;

use super::Decoded;
use super::bytes::Payload;
use crate::sys;

const SO_IP_SET: libc::c_int = 83;
const IP_SET_OP_GET_BYINDEX: u32 = 7;
/// `IPSET_PROTOCOL`; the kernel accepts 6 and up.
const IPSET_PROTOCOL: u32 = 7;
const IPSET_MAXNAMELEN: usize = 32;
const IPSET_DIM_MAX: u8 = 6;
const INV_MATCH: u8 = 1;
const FLAG_RETURN_NOMATCH: u32 = 1 << 7;
const FLAG_SKIP_COUNTER_UPDATE: u32 = 1 << 8;
const FLAG_SKIP_SUBCOUNTER_UPDATE: u32 = 1 << 9;

/// The name of the ipset with this index.
fn set_name(index: u16) -> Result<String, String> {
    let fd = sys::raw_ip_socket(libc::AF_INET).map_err(|e| format!("ipset socket: {e}"))?;
    // struct ip_set_req_get_set { unsigned op; unsigned version; union { char name[32];
    // ip_set_id_t index; } set; }
    let mut req = [0u8; 8 + IPSET_MAXNAMELEN];
    req[..4].copy_from_slice(&IP_SET_OP_GET_BYINDEX.to_ne_bytes());
    req[4..8].copy_from_slice(&IPSET_PROTOCOL.to_ne_bytes());
    req[8..10].copy_from_slice(&index.to_ne_bytes());
    sys::get_option_in_out(fd.as_fd(), libc::IPPROTO_IP, SO_IP_SET, &mut req)
        .map_err(|e| format!("ipset index {index}: {e}"))?;
    let name = &req[8..];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    match std::str::from_utf8(&name[..end]) {
        Ok("") => Err(format!("no ipset with index {index}")),
        Ok(name) => Ok(name.to_owned()),
        Err(_) => Err(format!("ipset index {index}: name not UTF-8")),
    }
}

/// libxt_set's `print_match`: `[!] --match-set NAME src,dst…`.
fn print_match(p: &Payload<'_>, name: &str, out: &mut String) {
    let (dim, flags) = (p.u8(2), p.u8(3));
    if flags & INV_MATCH != 0 {
        out.push_str(" !");
    }
    let _ = write!(out, " --match-set {name}");
    for i in 1..=dim {
        out.push(if i == 1 { ' ' } else { ',' });
        out.push_str(if flags & (1 << i) != 0 { "src" } else { "dst" });
    }
}

/// `set` revisions 1, 2 (`xt_set_info_match_v1`), 3 and 4 (`_v3`, `_v4`: flags and counter
/// conditions; counter conditions are not modelled).
pub(super) fn set(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    let (p, flags) = match rev {
        1 | 2 => (super::matches::payload(data, 4)?, 0),
        3 | 4 => {
            let p = super::matches::payload(data, 44)?;
            // The packets and bytes conditions: `op` is at the start (v3) or after the value.
            let op = |at: usize| if rev == 3 { p.u8(at) } else { p.u8(at + 8) };
            if op(8) != 0 || op(24) != 0 {
                return Err("packet or byte counter conditions not modelled".into());
            }
            (p, p.u32(40))
        }
        _ => return Err("revision not modelled".into()),
    };
    let known = FLAG_RETURN_NOMATCH | FLAG_SKIP_COUNTER_UPDATE | FLAG_SKIP_SUBCOUNTER_UPDATE;
    if flags & !known != 0 {
        return Err(format!("flags {flags:#x} not modelled"));
    }
    let (dim, set_flags) = (p.u8(2), p.u8(3));
    if dim == 0 || dim > IPSET_DIM_MAX || u32::from(set_flags) >> (dim + 1) != 0 {
        return Err(format!(
            "dimension {dim}, flags {set_flags:#x} not modelled"
        ));
    }
    let name = set_name(p.u16(0))?;
    out.push_str(" -m set");
    print_match(&p, &name, out);
    for (bit, opt) in [
        (FLAG_RETURN_NOMATCH, " --return-nomatch"),
        (FLAG_SKIP_COUNTER_UPDATE, " ! --update-counters"),
        (FLAG_SKIP_SUBCOUNTER_UPDATE, " ! --update-subcounters"),
    ] {
        if flags & bit != 0 {
            out.push_str(opt);
        }
    }
    Ok(())
}
