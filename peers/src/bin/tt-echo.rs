//! tokio-tungstenite echo server, written the idiomatic way: a multi-threaded
//! tokio runtime, one task per connection, `accept_async`, and the stream
//! forwarded into the sink (tokio-tungstenite's own `echo-server` example).
//! Default `WebSocketConfig` (128 KiB read buffer), TCP_NODELAY on.

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws.split();
    // Pings are answered by tungstenite itself; only data is echoed.
    let _ =
        read.try_filter(|msg| future::ready(msg.is_text() || msg.is_binary())).forward(write).await;
}

fn main() {
    let args = wsedge_peers::args("tt-echo");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(args.listen).await.expect("bind");
        eprintln!(
            "tt-echo: ws://{}/ ({} worker threads)",
            listener.local_addr().expect("local addr"),
            args.threads
        );
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream));
                }
                Err(e) => {
                    eprintln!("tt-echo: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}
