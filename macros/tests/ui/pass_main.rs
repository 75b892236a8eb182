// A binary whose `main` is an `#[urgent::main]` async fn.
#[urgent::main(worker_threads = 2)]
async fn main() {
    let out = urgent::spawn(async { "ran" }).await.unwrap();
    assert_eq!(out, "ran");
    assert_eq!(urgent::Handle::current().metrics().workers(), 2);
}
