//! Parse a dump file and print it back in canonical form (`--time` prints parse timing instead).
fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: render_dump FILE [--time]");
    let text = std::fs::read_to_string(path).expect("readable file");
    let start = std::time::Instant::now();
    let rs = nfscope_ruleset::parse_ruleset(&text, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let parsed = start.elapsed();
    if args.next().as_deref() == Some("--time") {
        let start = std::time::Instant::now();
        let out = nfscope_ruleset::render_ruleset(&rs);
        eprintln!(
            "{} rules, {} bytes: parse {parsed:?}, render {:?}",
            rs.rule_count(),
            text.len(),
            start.elapsed()
        );
        drop(out);
        return;
    }
    eprintln!(
        "{:?} {:?} notices={}",
        rs.family,
        rs.backend,
        rs.notices.len()
    );
    print!("{}", nfscope_ruleset::render_ruleset(&rs));
}
