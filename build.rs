//! `PGREPL_SKIP_LAB_TESTS=1` at build time compiles the lab tests as
//! ignored (`cfg(pgrepl_skip_lab)`), so a run without root reports them as
//! ignored, with the reason, instead of passing them.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(pgrepl_skip_lab)");
    println!("cargo::rerun-if-env-changed=PGREPL_SKIP_LAB_TESTS");
    if std::env::var("PGREPL_SKIP_LAB_TESTS").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=pgrepl_skip_lab");
    }
}
