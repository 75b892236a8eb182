#[urgent::main]
fn main() {}

#[urgent::test]
fn not_async_test() {}
