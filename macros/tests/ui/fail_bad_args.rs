#[urgent::main(flavor = "current_thread")]
async fn unknown_argument() {}

#[urgent::main(worker_threads = 0)]
async fn zero_workers() {}

#[urgent::test(quantum_us = 0)]
async fn zero_quantum() {}

#[urgent::main(worker_threads = "2")]
async fn string_value() {}

#[urgent::main(quantum_us = 1.5)]
async fn float_value() {}

#[urgent::main(worker_threads = -1)]
async fn negative_value() {}

#[urgent::main(worker_threads = 1, worker_threads = 2)]
async fn duplicate_argument() {}

#[urgent::test(worker_threads)]
async fn missing_value() {}

fn main() {}
