//! urgent::net on urgent's own mio driver: TCP and UDP over loopback.
//!
//! Every test bounds its loops and wraps its waits in a timeout, so a bug
//! fails instead of hanging. No test asserts speed.

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use urgent::net::{TcpListener, TcpStream, UdpSocket};
use urgent::time::timeout;
use urgent::{Builder, Runtime};

const LIMIT: Duration = Duration::from_secs(20);

fn rt(workers: usize) -> Runtime {
    Builder::new().worker_threads(workers).build().unwrap()
}

/// Accepts forever, echoing each connection on its own task.
async fn echo_server(listener: TcpListener) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        urgent::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

async fn echo_client(addr: std::net::SocketAddr, id: usize, rounds: usize) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let mut back = [0u8; 64];
    for r in 0..rounds {
        let msg = format!("client {id} round {r}");
        let msg = msg.as_bytes();
        c.write_all(msg).await.unwrap();
        c.read_exact(&mut back[..msg.len()]).await.unwrap();
        assert_eq!(&back[..msg.len()], msg);
    }
}

fn tcp_echo(workers: usize) {
    let rt = rt(workers);
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        urgent::spawn(echo_server(listener));
        let clients: Vec<_> = (0..8)
            .map(|id| urgent::spawn(echo_client(addr, id, 200)))
            .collect();
        timeout(LIMIT, async {
            for c in clients {
                c.await.unwrap();
            }
        })
        .await
        .expect("echo clients timed out");
    });
}

#[test]
fn tcp_echo_one_worker() {
    tcp_echo(1);
}

#[test]
fn tcp_echo_two_workers() {
    tcp_echo(2);
}

#[test]
fn tcp_echo_large_transfer_both_directions_at_once() {
    // 4 MiB through a split stream: the writer fills the socket buffers, so
    // both directions have to wait for readiness many times.
    let rt = rt(2);
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        urgent::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (mut r, mut w) = s.into_split();
            futures::io::copy(&mut r, &mut w).await.unwrap();
        });
        let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
        let mut c = TcpStream::connect(addr).await.unwrap();
        // `c.split()` would pick futures' `AsyncReadExt::split(self)`.
        let (mut r, mut w) = TcpStream::split(&mut c);
        let send = async {
            w.write_all(&data).await.unwrap();
            w.close().await.unwrap();
        };
        let recv = async {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        };
        let ((), got) = timeout(LIMIT, futures::future::join(send, recv))
            .await
            .expect("transfer timed out");
        assert!(got == data, "echoed bytes differ");
    });
}

#[test]
fn udp_round_trip() {
    let rt = rt(2);
    rt.block_on(async {
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let saddr = server.local_addr().unwrap();
        let s2 = server.clone();
        urgent::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = s2.recv_from(&mut buf).await.unwrap();
                s2.send_to(&buf[..n], from).await.unwrap();
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(saddr).await.unwrap();
        assert_eq!(client.peer_addr().unwrap(), saddr);
        let mut buf = [0u8; 1500];
        for i in 0..100u32 {
            let msg = i.to_le_bytes();
            // UDP may drop on a loaded machine: retry a few times.
            let mut got = None;
            for _ in 0..5 {
                client.send(&msg).await.unwrap();
                if let Ok(r) = timeout(Duration::from_secs(2), client.recv(&mut buf)).await {
                    got = Some(r.unwrap());
                    break;
                }
            }
            let n = got.expect("no UDP reply after 5 tries");
            assert_eq!(&buf[..n], &msg);
        }
        // send_to / recv_from on an unconnected socket too.
        let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        other.send_to(b"hello", saddr).await.unwrap();
        let (n, from) = timeout(LIMIT, other.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&buf[..n], from), (&b"hello"[..], saddr));
    });
}

#[test]
fn refused_connect_is_an_error() {
    let rt = rt(1);
    rt.block_on(async {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let err = timeout(LIMIT, TcpStream::connect(addr))
            .await
            .expect("refused connect hung")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    });
}

#[test]
fn bad_addresses_and_address_in_use_are_errors() {
    let rt = rt(1);
    rt.block_on(async {
        for bad in ["not an address", "127.0.0.1", "127.0.0.1:99999", ""] {
            assert!(TcpListener::bind(bad).await.is_err(), "bind {bad:?}");
            assert!(TcpStream::connect(bad).await.is_err(), "connect {bad:?}");
            assert!(UdpSocket::bind(bad).await.is_err(), "udp bind {bad:?}");
        }
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = TcpListener::bind(l.local_addr().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse);
        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let err = UdpSocket::bind(u.local_addr().unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse);
        assert_eq!(
            UdpSocket::bind("127.0.0.1:0")
                .await
                .unwrap()
                .peer_addr()
                .unwrap_err()
                .kind(),
            ErrorKind::NotConnected
        );
    });
}

#[test]
fn writing_to_a_closed_peer_errors_instead_of_hanging() {
    let rt = rt(1);
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = urgent::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            drop(s);
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        server.await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(c.read(&mut buf).await.unwrap(), 0, "end of stream");
        let r = timeout(LIMIT, async {
            for _ in 0..1000 {
                if let Err(e) = c.write_all(&[0u8; 1024]).await {
                    return Some(e);
                }
                urgent::time::sleep(Duration::from_millis(1)).await;
            }
            None
        })
        .await
        .expect("writes hung");
        let e = r.expect("writing to a closed peer kept succeeding");
        assert!(
            matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
            "{e}"
        );
    });
}

#[test]
fn accept_loop_with_100_concurrent_clients() {
    let rt = rt(2);
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        urgent::spawn(echo_server(listener));
        let clients: Vec<_> = (0..100)
            .map(|id| urgent::spawn(echo_client(addr, id, 10)))
            .collect();
        timeout(LIMIT, async {
            for c in clients {
                c.await.unwrap();
            }
        })
        .await
        .expect("100 clients timed out");
    });
}

#[inline(never)]
fn spin(stop: &AtomicBool) -> u64 {
    // Call-free: only a relaxed load and arithmetic per iteration.
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    x
}

#[test]
fn io_completes_while_two_call_free_spinners_hold_the_only_worker() {
    let rt = Builder::new()
        .worker_threads(1)
        .quantum(Duration::from_millis(1))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let (addr, spinners) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                urgent::spawn_cpu(move || spin(&stop))
            })
            .collect();
        // Let both spinners start on the worker first.
        urgent::time::sleep(Duration::from_millis(20)).await;
        let served = served.clone();
        // The echo server is an ordinary task on the same (only) worker.
        urgent::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        s.write_all(&buf[..n]).await.unwrap();
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        (addr, spinners)
    });

    // A plain blocking client on its own thread, with timeouts.
    let client = std::thread::spawn(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        c.set_nodelay(true).unwrap();
        for i in 0..50u32 {
            c.write_all(&i.to_le_bytes()).unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b)
                .expect("echo did not come back while spinners ran");
            assert_eq!(u32::from_le_bytes(b), i);
        }
    });
    let client_result = client.join();
    let spinning = spinners.iter().all(|s| !s.is_finished());
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for s in spinners {
            timeout(LIMIT, s)
                .await
                .expect("spinner did not stop")
                .unwrap();
        }
    });
    client_result.expect("client failed");
    assert!(spinning, "the spinners stopped before the I/O was done");
    assert_eq!(served.load(Ordering::Relaxed), 50);
}

#[test]
fn reunite_and_split_halves() {
    let rt = rt(1);
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let a = TcpStream::connect(addr).await.unwrap();
        let (b, _) = listener.accept().await.unwrap();
        let (ra, wa) = a.into_split();
        let (rb, wb) = b.into_split();
        let err = ra.reunite(wb).unwrap_err();
        let (ra, wb) = (err.0, err.1);
        let mut a = ra.reunite(wa).unwrap();
        let mut b = rb.reunite(wb).unwrap();
        a.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        b.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
        // Dropping an owned write half shuts the write side down.
        let (_r, w) = a.into_split();
        drop(w);
        let mut rest = Vec::new();
        timeout(LIMIT, b.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty());
    });
}

#[test]
fn sockets_work_from_block_on_and_from_cpu_tasks() {
    let rt = rt(1);
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        urgent::spawn(echo_server(listener));
        let got = urgent::spawn_cpu(move || {
            urgent::wait(async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                c.write_all(b"from a CPU task").await.unwrap();
                let mut b = [0u8; 15];
                c.read_exact(&mut b).await.unwrap();
                b
            })
        });
        let got = timeout(LIMIT, got).await.unwrap().unwrap();
        assert_eq!(&got, b"from a CPU task");
    });
}

#[test]
fn pending_io_fails_when_the_runtime_shuts_down() {
    let rt = rt(1);
    let handle = rt.handle().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        handle.block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(()).unwrap();
            l.accept().await.map(drop)
        })
    });
    rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(rt);
    let r = t.join().unwrap();
    assert!(
        r.is_err(),
        "accept on a shut-down runtime must fail, not hang"
    );
}

#[test]
fn two_tasks_receive_on_one_shared_udp_socket() {
    // Both receivers wait on the same socket at once: each must be woken.
    let rt = rt(2);
    rt.block_on(async {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = sock.local_addr().unwrap();
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let sock = sock.clone();
                urgent::spawn(async move {
                    let mut buf = [0u8; 8];
                    sock.recv_from(&mut buf).await.unwrap().0
                })
            })
            .collect();
        urgent::time::sleep(Duration::from_millis(20)).await;
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        timeout(LIMIT, async {
            // Keep sending until both receivers got a datagram (UDP may drop).
            while receivers.iter().any(|r| !r.is_finished()) {
                sender.send_to(b"x", addr).await.unwrap();
                urgent::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("a receiver was never woken");
        for r in receivers {
            assert_eq!(r.await.unwrap(), 1);
        }
    });
}

#[test]
fn slots_are_reused_across_many_short_connections() {
    let rt = rt(2);
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        urgent::spawn(echo_server(listener));
        timeout(LIMIT, async {
            for id in 0..300 {
                echo_client(addr, id, 1).await;
            }
        })
        .await
        .expect("short connections timed out");
    });
}
