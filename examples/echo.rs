//! A TCP echo server on urgent's own driver (`urgent::net`, no tokio).
//!
//! ```text
//! cargo run --example echo                    # serves on 127.0.0.1:0, runs a short demo client, exits
//! cargo run --example echo -- 127.0.0.1:7000  # serves until killed; try `nc 127.0.0.1 7000`
//! ```
//!
//! Every connection is one ordinary task; reads and writes wait on the
//! runtime's mio driver. A CPU task that burns a few hundred milliseconds
//! runs beside it to show that the echo keeps answering.

use std::io;
use std::time::{Duration, Instant};

use futures::io::{AsyncReadExt, AsyncWriteExt};
use urgent::net::{TcpListener, TcpStream};

async fn serve(listener: TcpListener) -> io::Result<()> {
    loop {
        let (mut sock, peer) = listener.accept().await?;
        urgent::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Err(e) = sock.write_all(&buf[..n]).await {
                            eprintln!("{peer}: write failed: {e}");
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("{peer}: read failed: {e}");
                        break;
                    }
                }
            }
        });
    }
}

#[inline(never)]
fn burn(d: Duration) -> u64 {
    let t0 = Instant::now();
    let mut x = 1u64;
    while t0.elapsed() < d {
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
    }
    x
}

#[urgent::main(worker_threads = 1)]
async fn main() -> io::Result<()> {
    let arg = std::env::args().nth(1);
    let listener = TcpListener::bind(arg.as_deref().unwrap_or("127.0.0.1:0")).await?;
    let addr = listener.local_addr()?;
    println!("echo server listening on {addr}");
    if arg.is_some() {
        return serve(listener).await;
    }

    // Demo: a CPU hog on the only worker, and a client talking meanwhile.
    urgent::spawn(serve(listener));
    let hog = urgent::spawn_cpu(|| burn(Duration::from_millis(300)));
    let mut c = TcpStream::connect(addr).await?;
    c.set_nodelay(true)?;
    for line in ["hello", "from", "urgent"] {
        let t0 = Instant::now();
        c.write_all(line.as_bytes()).await?;
        let mut back = vec![0u8; line.len()];
        c.read_exact(&mut back).await?;
        println!(
            "sent {line:?}, got {:?} back in {:?} (a CPU task is busy on the same worker)",
            String::from_utf8_lossy(&back),
            t0.elapsed()
        );
    }
    hog.await.expect("the CPU task panicked");
    println!("done");
    Ok(())
}
