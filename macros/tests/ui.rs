//! Compile errors of `#[urgent::main]` / `#[urgent::test]` misuse, and two
//! programs that must compile and run (trybuild). Lives in the macros crate
//! so trybuild only builds `urgent` without its benchmark and example
//! dev-dependencies.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass_*.rs");
    t.compile_fail("tests/ui/fail_*.rs");
}
