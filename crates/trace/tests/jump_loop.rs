//! A ruleset whose jumps loop (the parser refuses such a dump, as the kernel does; this one is
//! built in code) is refused by the tracer with the loop named, instead of being walked forever
//! (it used to grow to 23 GB until the OOM killer).

use nfscope_ruleset::{ParseOptions, Rule, parse_ruleset};
use nfscope_trace::{Packet, Proto, TraceError, TraceInput, Tracer, trace};

#[test]
fn a_reachable_jump_loop_is_refused_not_walked() {
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n\
                -A INPUT -p udp -j ACCEPT\n-A A -j B\n-A B -g A\nCOMMIT\n";
    let mut ruleset = parse_ruleset(text, &ParseOptions::default()).unwrap();
    let packet = Packet::new(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        Proto::Tcp,
    );
    // Unreachable, the loop is harmless (the kernel loads it too): tracing works.
    let input = TraceInput::new(vec![ruleset.clone()]);
    trace(&input, &packet).expect("an unreachable loop does not stop the trace");

    // INPUT → A → B → A: the packet would loop forever.
    let input_chain = &mut ruleset.tables[0].chains[0];
    let template = input_chain.rules[0].clone();
    let mut spec = (*template.spec).clone();
    spec.protocol = None;
    spec.target.as_mut().unwrap().name = "A".to_owned();
    input_chain.rules.insert(
        0,
        Rule {
            spec: spec.into(),
            ..template
        },
    );
    let input = TraceInput::new(vec![ruleset]);
    let err = Tracer::new(&input).trace(&packet).unwrap_err();
    let TraceError::Input(message) = &err else {
        panic!("unexpected error {err:?}");
    };
    assert!(message.contains("jump loop"), "{message}");
    assert!(message.contains("A → B → A"), "{message}");
    assert!(
        message.contains("line 6") && message.contains("line 7"),
        "{message}"
    );
}

/// Error texts quote what they were given (interface names, route lines): never raw control bytes.
#[test]
fn trace_errors_escape_control_characters() {
    let shown = TraceError::Input("unknown interface `eth\x1b]0;x\x07`".into()).to_string();
    assert_eq!(shown, "unknown interface `eth\\u{1b}]0;x\\u{7}`");
    let shown = nfscope_trace::parse_routes("default via \x1b[31m dev eth0\n")
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string());
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
}
