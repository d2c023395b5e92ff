//! Compile-fail tests: each file of `tests/ui/` is one mistake, and its
//! `.stderr` the diagnostic the user sees.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
