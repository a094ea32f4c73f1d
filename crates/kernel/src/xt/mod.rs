//! x_tables rules as `iptables-save` text, decoded from the kernel's bytes: no fork.
//!
//! Owns turning what the kernel holds for an iptables rule into the exact line the save tools
//! print (`-A CHAIN … -m NAME … -j TARGET …`), so rule text can be read over `getsockopt` (legacy)
//! and nf_tables netlink (iptables-nft) and handed to `nfscope-ruleset`'s parser like the save
//! tools' output. [`ext`] decodes one extension's payload (`xt_entry_match` / `xt_entry_target`
//! data, the same structures in both backends); the readers assemble the rest of the line (the
//! legacy `ipt_ip` header, iptables-nft's native expressions, verdicts and jumps). A payload this
//! module cannot render exactly is [`ext::Unsupported`], never a guess: the reader then falls back
//! to the save tool and counts it. It does not talk to the kernel nor parse text.

pub(crate) mod ext;
pub(crate) mod nft_line;
