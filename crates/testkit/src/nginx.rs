//! nginx (Debian's `nginx-light`) as a reverse proxy to one upstream, the benchmarks' and the
//! warm-path harness's yardstick for a proxy's cost: two workers, keep-alive connections to
//! the upstream, and no client or upstream connection closed after its 1,000th request
//! (nginx's default `keepalive_requests`), since the gateway closes none either. Stopped
//! (`nginx -s quit`, then waited for) and its directory removed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx.
pub struct Nginx {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    bin: &'static str,
    dir: PathBuf,
    child: Child,
}

impl Nginx {
    /// nginx proxying to `upstream`, listening once it returns; `None` when nginx is not
    /// installed or did not listen within 10 s.
    pub fn start(upstream: SocketAddr) -> Option<Nginx> {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let dir = std::env::temp_dir().join(format!("kantai-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let d = dir.display();
        let conf = format!(
            "worker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             keepalive_requests 1000000;\n\
             upstream fn {{ server {upstream}; keepalive 128; keepalive_requests 1000000; }}\n\
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
             proxy_pass http://fn;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
             }}\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).ok()?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let n = Nginx {
            addr: ([127, 0, 0, 1], port).into(),
            bin,
            dir,
            child,
        };
        let start = Instant::now();
        while TcpStream::connect(n.addr).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                // Dropping `n` stops what did start.
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Some(n)
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // nginx's graceful stop (SIGQUIT to the master named in the pid file); the master
        // stops its workers. A master that never wrote its pid file is killed.
        let quit = Command::new(self.bin)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-p")
            .arg(&self.dir)
            .args(["-s", "quit"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !quit.is_ok_and(|s| s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
