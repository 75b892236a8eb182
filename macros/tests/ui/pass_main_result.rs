// `main` may return a Result; `?` converts into its error type.
use std::error::Error;

#[urgent::main(quantum_us = 1_000)]
async fn main() -> Result<(), Box<dyn Error>> {
    let n: u64 = "21".parse()?;
    let doubled = urgent::spawn(async move { n * 2 }).await?;
    assert_eq!(doubled, 42);
    Ok(())
}
