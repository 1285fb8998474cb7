//! Compile-fail tests for the macros: one file per rule under `tests/ui/`.

#[test]
fn macro_errors_point_at_the_offending_tokens() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
