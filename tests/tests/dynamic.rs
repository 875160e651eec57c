//! Dynamically linked programs: Debian's own binaries, unmodified, with their loader and
//! libraries packed by `build-image` (a C program built without `-static`, `ls`, redis,
//! nginx, python3 with extension modules loaded by `dlopen`).

use kiln_tests::{
    build_image, free_port, gcc, kiln, root, run_image, scratch, wait_for_http, Guest,
};
use std::path::Path;
use std::process::Command;

const HELLO: &str = r#"
#include <stdio.h>
#include <string.h>
#include <dlfcn.h>
int main(int argc, char **argv) {
    printf("dynamic hello, argc=%d, argv[1]=%s\n", argc, argc > 1 ? argv[1] : "");
    /* The loader and libc are named in /proc/self/maps, as on Linux. */
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int libc = 0, ld = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strstr(line, "r-xp") && strstr(line, "/libc.so.6")) libc = 1;
        if (strstr(line, "/ld-linux-x86-64.so.2")) ld = 1;
    }
    printf("maps: libc=%d ld=%d\n", libc, ld);
    /* dlopen of a library packed with --lib. */
    void *m = dlopen("libz.so.1", RTLD_NOW);
    const char *(*ver)(void) = m ? (const char *(*)(void))dlsym(m, "zlibVersion") : 0;
    printf("dlopen: %s\n", ver ? ver() : dlerror());
    return 7;
}
"#;

#[test]
fn c_program_without_static() {
    let dir = scratch("dynamic");
    let prog = gcc(&dir, "dyn-hello", HELLO, &[]);
    let img = build_image(
        "dyn-hello",
        &["--elf", prog.to_str().unwrap(), "--lib", "libz.so.1"],
    );
    let r = run_image(&img, &["--", "first"]);
    assert_eq!(r.status, 7, "{r:?}");
    let zlib = std::fs::read_link("/lib/x86_64-linux-gnu/libz.so.1")
        .map(|p| {
            p.to_string_lossy()
                .trim_start_matches("libz.so.")
                .to_string()
        })
        .unwrap_or_default();
    assert_eq!(
        r.out(),
        format!("dynamic hello, argc=2, argv[1]=first\nmaps: libc=1 ld=1\ndlopen: {zlib}\n"),
        "{r:?}"
    );
    // The loader's routine probes (ld.so.cache, hwcaps directories) are no packaging hint.
    assert!(!r.stderr.contains("looked for"), "{r:?}");

    // Provenance lists every packed library with its hash and Debian package; the SBOM too.
    let i = kiln(&["inspect", img.to_str().unwrap(), "--json"]);
    assert_eq!(i.status, 0, "{i:?}");
    let doc: serde_json::Value = serde_json::from_slice(&i.stdout).unwrap();
    let libs = doc["libraries"].as_array().expect("libraries recorded");
    let libc = libs
        .iter()
        .find(|l| l["path"] == "/lib/x86_64-linux-gnu/libc.so.6")
        .unwrap_or_else(|| panic!("no libc in {libs:?}"));
    assert_eq!(libc["package"], "libc6:amd64", "{libc}");
    assert!(libc["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(libc["sha256"].as_str().unwrap().len(), 64);
    assert!(libs.iter().any(|l| l["reason"] == "interpreter"));
    assert!(libs
        .iter()
        .any(|l| l["path"] == "/lib/x86_64-linux-gnu/libz.so.1" && l["reason"] == "--lib"));
    let sbom = doc["sbom"]["components"].as_array().unwrap();
    assert!(sbom.iter().any(|c| c["name"] == "libc.so.6"
        && c["purl"]
            .as_str()
            .unwrap()
            .starts_with("pkg:deb/debian/libc6@")));

    // Byte-reproducible.
    let again = build_image(
        "dyn-hello-again",
        &["--elf", prog.to_str().unwrap(), "--lib", "libz.so.1"],
    );
    assert_eq!(std::fs::read(&img).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn debian_ps_df_and_free_read_proc() {
    // procps's ps lists /proc's pid directories and reads each one's stat, status and
    // cmdline; coreutils' df reads /proc/self/mountinfo and statfs; free reads meminfo.
    let ps = build_image("ps", &["--elf", "/usr/bin/ps"]);
    let r = run_image(&ps, &["--", "-o", "pid,ppid,nlwp,comm,args"]);
    assert_eq!(r.status, 0, "{r:?}");
    let lines: Vec<String> = r
        .out()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "PID PPID NLWP COMMAND COMMAND",
            // A program from /usr keeps its path in the image.
            "1 0 1 ps /usr/bin/ps -o pid,ppid,nlwp,comm,args"
        ],
        "{r:?}"
    );

    let df = build_image("df", &["--elf", "/usr/bin/df"]);
    let r = run_image(&df, &["--memory", "256M", "--", "-k"]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    let tmp = out
        .lines()
        .find(|l| l.ends_with(" /tmp"))
        .unwrap_or_else(|| panic!("{r:?}"));
    let fields: Vec<&str> = tmp.split_whitespace().collect();
    // tmpfs, half of the 256 MiB, most of it free.
    assert_eq!(fields[0], "tmpfs", "{r:?}");
    let kib: u64 = fields[1].parse().unwrap();
    assert!((120_000..=131_072).contains(&kib), "{r:?}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("rootfs ") && l.ends_with(" /")),
        "{r:?}"
    );

    let free = build_image("free", &["--elf", "/usr/bin/free"]);
    let r = run_image(&free, &["--memory", "256M", "--", "-m"]);
    assert_eq!(r.status, 0, "{r:?}");
    let mem = r.out();
    let total: u64 = mem
        .lines()
        .find_map(|l| l.strip_prefix("Mem:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{r:?}"));
    // The RAM the kernel manages: 256 MiB less the firmware's and the kernel image's share.
    assert!((240..=256).contains(&total), "{r:?}");

    // vmstat reads /proc/vmstat, /proc/stat and meminfo; nproc (glibc's get_nprocs)
    // /sys/devices/system/cpu/online.
    let vmstat = build_image("vmstat", &["--elf", "/usr/bin/vmstat"]);
    let r = run_image(&vmstat, &["--memory", "256M"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.out().lines().nth(1).is_some_and(|l| l.contains("swpd")),
        "{r:?}"
    );
    let nproc = build_image("nproc", &["--elf", "/usr/bin/nproc"]);
    let r = run_image(&nproc, &["--cpus", "2", "--", "--all"]);
    assert_eq!((r.status, r.out().as_str()), (0, "2\n"), "{r:?}");
}

#[test]
fn programs_from_usr_keep_their_path_and_bin_name_links_to_it() {
    let img = build_image("readlink", &["--elf", "/usr/bin/readlink"]);
    let r = run_image(&img, &["--", "/proc/self/exe", "/bin/readlink"]);
    assert_eq!(
        (r.status, r.out().as_str()),
        (0, "/usr/bin/readlink\n/usr/bin/readlink\n"),
        "{r:?}"
    );
}

#[test]
fn debian_perl_sqlite3_jq_and_openssl_run_unmodified() {
    let dir = scratch("dynamic-tools");
    let json = dir.join("in.json");
    std::fs::write(&json, r#"{"a":[1,2,{"b":"x"}]}"#).unwrap();
    let json_file = format!("{}:/in.json", json.display());
    let cases: [(&str, Vec<&str>, Vec<&str>, &str); 4] = [
        (
            "/usr/bin/perl",
            vec![],
            vec![
                "-e",
                "print join(',', map { $_ * 2 } 1..3), ' ', scalar gmtime(0), qq(\n)",
            ],
            "2,4,6 Thu Jan  1 00:00:00 1970\n",
        ),
        (
            "/usr/bin/sqlite3",
            vec![],
            vec![
                ":memory:",
                "create table t(a); insert into t values (1),(2),(39); select sum(a) from t;",
            ],
            "42\n",
        ),
        (
            "/usr/bin/jq",
            vec!["--file", &json_file],
            vec!["-c", ".a[2]", "/in.json"],
            "{\"b\":\"x\"}\n",
        ),
        (
            "/usr/bin/openssl",
            vec![],
            vec!["sha256", "-r", "/etc/hostname"],
            "",
        ),
    ];
    // openssl's digest depends on the image's host name: its shape is checked.
    for (elf, files, args, want) in cases {
        let name = Path::new(elf).file_name().unwrap().to_str().unwrap();
        let mut build = vec!["--elf", elf];
        build.extend(files.iter().copied());
        let img = build_image(&format!("tool-{name}"), &build);
        let mut run = vec!["--"];
        run.extend(args.iter().copied());
        let r = run_image(&img, &run);
        assert_eq!(r.status, 0, "{elf}: {r:?}");
        if want.is_empty() {
            let out = r.out();
            assert_eq!(out.len(), 64 + " */etc/hostname\n".len(), "{r:?}");
            assert!(out.ends_with(" */etc/hostname\n"), "{r:?}");
        } else {
            assert_eq!(r.out(), want, "{elf}: {r:?}");
        }
    }
}

#[test]
fn debian_gzip_compresses_a_file_of_the_root_filesystem() {
    // The root filesystem's files carry a time (one second after the epoch unless
    // SOURCE_DATE_EPOCH says otherwise): at 0, gzip warns "file timestamp out of range"
    // and exits with status 2.
    let img = build_image("gzip", &["--elf", "/usr/bin/gzip"]);
    let r = run_image(&img, &["--", "-c", "/etc/hostname"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(!r.stderr.contains("warning"), "{r:?}");
    // Magic, deflate, FNAME, then the file's mtime (little-endian seconds).
    assert_eq!(
        r.stdout[..8],
        [0x1f, 0x8b, 8, 8, 1, 0, 0, 0],
        "{:?}",
        r.stdout
    );
}

#[test]
fn glibc_programs_get_the_c_utf8_locale() {
    // Without the locale's files `setlocale` fails quietly and `wc -m` counts bytes.
    let dir = scratch("locale");
    std::fs::write(dir.join("t.txt"), "h\u{e9}llo\n").unwrap();
    let file = format!("{}:/t.txt", dir.join("t.txt").display());
    let img = build_image("wc", &["--elf", "/usr/bin/wc", "--file", &file]);
    let r = run_image(&img, &["-e", "LANG=C.UTF-8", "--", "-m", "/t.txt"]);
    assert_eq!((r.status, r.out().as_str()), (0, "6 /t.txt\n"), "{r:?}");
}

#[test]
fn debian_ls() {
    let img = build_image("ls", &["--elf", "/usr/bin/ls"]);
    let r = run_image(&img, &["--", "-la", "/lib/x86_64-linux-gnu/", "/"]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    assert!(
        out.contains("libc.so.6") && out.contains("libselinux.so.1"),
        "{r:?}"
    );
    assert!(out.contains("lib -> usr/lib"), "{r:?}");
    assert!(!r.stderr.contains("not implemented"), "{r:?}");
}

#[test]
fn missing_library_is_a_clear_error() {
    let dir = scratch("dynamic");
    let lib = dir.join("libkilnmissing.so");
    let src = dir.join("kilnmissing.c");
    std::fs::write(&src, "int kiln_missing(void){return 1;}\n").unwrap();
    let st = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let prog = gcc(
        &dir,
        "needs-missing",
        "int kiln_missing(void); int main(void){return kiln_missing();}\n",
        &["-L", dir.to_str().unwrap(), "-lkilnmissing"],
    );
    std::fs::remove_file(&lib).unwrap();
    let r = kiln(&["build-image", "--elf", prog.to_str().unwrap()]);
    assert_ne!(r.status, 0, "{r:?}");
    for want in [
        "libkilnmissing.so",
        "needed by /bin/needs-missing",
        "--lib",
        "/usr/lib/x86_64-linux-gnu",
    ] {
        assert!(r.stderr.contains(want), "missing {want:?}: {r:?}");
    }
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    // --lib makes no sense for a static program.
    let r = kiln(&["build-image", "--elf", "/bin/busybox", "--lib", "libz.so.1"]);
    assert_ne!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("statically linked"), "{r:?}");
}

#[test]
fn redis_server() {
    let img = build_image("redis-server", &["--elf", "/usr/bin/redis-server"]);
    let port = free_port().to_string();
    let fwd = format!("{port}:6379");
    // No fork: no background saves (--save ''), no append-only file rewrites.
    let _guest = Guest::boot(
        &img,
        &[
            "-p",
            &fwd,
            "--",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ],
        "Ready to accept connections",
    );
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["set", "greeting", "hello from redis on kiln"]), "OK");
    assert_eq!(cli(&["get", "greeting"]), "hello from redis on kiln");
    assert_eq!(cli(&["incrby", "n", "41"]), "41");
    assert_eq!(cli(&["incr", "n"]), "42");
}

/// Debian's Prometheus node exporter (Go, dynamically linked) reads the machine's and the
/// process's figures from `/proc` and `/sys`, and asks `adjtimex` for the clock's state:
/// what it serves must be Kiln's own accounting, and the collectors it runs must not fail.
#[test]
fn prometheus_node_exporter_serves_the_machines_figures() {
    let img = build_image(
        "node-exporter",
        &["--elf", "/usr/bin/prometheus-node-exporter"],
    );
    let port = free_port();
    let fwd = format!("{port}:9100");
    // It logs to standard error: the landing page says it is up.
    let _guest = background(&["run", "--image", img.to_str().unwrap(), "-p", &fwd]);
    wait_for_http(&format!("http://127.0.0.1:{port}/"));
    // A scrape runs every collector: seconds under TCG.
    let scrape = Command::new("curl")
        .args([
            "-sf",
            "-m",
            "120",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .unwrap();
    assert!(scrape.status.success(), "{scrape:?}");
    let metrics = String::from_utf8_lossy(&scrape.stdout).into_owned();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    // The CPU's time: idle most of it, some of it the program's and the kernel's; the
    // exporter's own CPU time no more than the machine's busy time.
    let idle = value("node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}");
    let user = value("node_cpu_seconds_total{cpu=\"0\",mode=\"user\"}");
    let system = value("node_cpu_seconds_total{cpu=\"0\",mode=\"system\"}");
    assert!(idle > 0.0 && user > 0.0 && system > 0.0, "{metrics}");
    let process = value("process_cpu_seconds_total");
    assert!(
        process > 0.0 && process <= user + system + 0.02,
        "{metrics}"
    );
    assert!(value("node_memory_MemTotal_bytes") > 100e6, "{metrics}");
    // adjtimex answers: the clock is not synchronised by NTP in the guest.
    assert_eq!(value("node_timex_sync_status"), 0.0, "{metrics}");
    for collector in [
        "cpu",
        "meminfo",
        "stat",
        "timex",
        "filefd",
        "entropy",
        "diskstats",
        "netdev",
        "filesystem",
        "uname",
        "loadavg",
        "vmstat",
    ] {
        let ok = format!("node_scrape_collector_success{{collector=\"{collector}\"}}");
        assert_eq!(value(&ok), 1.0, "collector {collector} failed:\n{metrics}");
    }
}

#[test]
fn iperf3_measures_udp_with_parallel_streams() {
    // iperf3's UDP server (--forceflush: its output is not a terminal, and the test waits for
    // it) connects the socket its client's first datagram reached, and binds
    // another to the same port (both with SO_REUSEADDR) for the next stream. Kiln must allow
    // that bind, and give each datagram to the socket that matches its sender best.
    let img = build_image("iperf3", &["--elf", "/usr/bin/iperf3"]);
    let port = free_port().to_string();
    let (tcp, udp) = (format!("{port}:5201"), format!("{port}:5201/udp"));
    let _guest = Guest::boot(
        &img,
        &["-p", &tcp, "-p", &udp, "--", "-s", "--forceflush"],
        "Server listening on 5201",
    );
    // Two streams of 1,200-byte datagrams at 2 Mbit/s each for 2 s, reported in JSON.
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port, "-u", "-b", "2M", "-t", "2"])
        .args([
            "-P",
            "2",
            "-l",
            "1200",
            "--json",
            "--connect-timeout",
            "20000",
        ])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert!(out.status.success(), "iperf3 failed: {}", report["error"]);
    let streams = report["end"]["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 2, "{report}");
    for s in streams {
        let udp = &s["udp"];
        let (sent, lost) = (
            udp["packets"].as_u64().unwrap(),
            udp["lost_packets"].as_u64().unwrap(),
        );
        // The server counts what reached it: every stream's datagrams, few lost.
        assert!(
            sent > 300 && lost * 10 < sent,
            "stream {}: {sent} sent, {lost} lost",
            s["udp"]["socket"]
        );
    }
}

/// A `run` in the background (its own process group), stopped when dropped.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        kiln_tests::stop_run(&mut self.0);
    }
}

fn background(args: &[&str]) -> Background {
    use std::os::unix::process::CommandExt;
    Background(
        Command::new(kiln_tests::xtask_bin())
            .args(args)
            .current_dir(root())
            .stdout(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn nginx_serves_concurrent_clients() {
    let dir = scratch("dynamic/nginx");
    std::fs::create_dir_all(dir.join("www")).unwrap();
    let page = "hello from nginx on kiln\n".repeat(400);
    std::fs::write(dir.join("www/index.html"), &page).unwrap();
    // One process (no fork): daemon off, master_process off; logs on stderr; temporary
    // files in the writable /tmp.
    let conf = "daemon off;\nmaster_process off;\nerror_log stderr notice;\npid /tmp/nginx.pid;\n\
                events { worker_connections 512; }\n\
                http {\n  access_log off;\n  client_body_temp_path /tmp/body;\n  proxy_temp_path /tmp/proxy;\n\
                fastcgi_temp_path /tmp/fastcgi;\n  uwsgi_temp_path /tmp/uwsgi;\n  scgi_temp_path /tmp/scgi;\n\
                server { listen 8080; root /srv/www; }\n}\n";
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let img = build_image(
        "nginx",
        &[
            "--elf",
            "/usr/sbin/nginx",
            "--file",
            &format!("{}:/etc/nginx/nginx.conf", dir.join("nginx.conf").display()),
            "--file",
            &format!("{}:/srv/www", dir.join("www").display()),
            "--arg",
            "-e",
            "--arg",
            "stderr",
        ],
    );
    let port = free_port();
    let _guest = background(&[
        "run",
        "--image",
        img.to_str().unwrap(),
        "--timeout",
        "240",
        "-p",
        &format!("{port}:8080"),
    ]);
    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(wait_for_http(&url), page);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                (0..3)
                    .map(|_| kiln_tests::curl(&url).unwrap_or_default())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for c in clients {
        for body in c.join().unwrap() {
            assert_eq!(body, page);
        }
    }
    let missing = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10"])
        .arg(format!("{url}nope"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");
    // 200 clients at once that send their request and their FIN together (a request then
    // `shutdown(SHUT_WR)`): nginx must answer each and close, not wait out its keep-alive
    // timeout. Its edge-triggered epoll learns of the FIN from EPOLLRDHUP on the first
    // event (before the fix the FIN was reported only after the read, as no new edge).
    let clients: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || -> Result<String, String> {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
                    .map_err(|e| format!("connect: {e}"))?;
                s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                    .unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: kiln\r\n\r\n")
                    .map_err(|e| format!("write: {e}"))?;
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let mut answer = String::new();
                s.read_to_string(&mut answer)
                    .map_err(|e| format!("no end of the answer: {e}"))?;
                Ok(answer)
            })
        })
        .collect();
    for c in clients {
        let answer = c.join().unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.100}");
        assert!(answer.ends_with(&page), "the body was cut short");
    }
}

/// Copies Python's standard library without what a server needs least (tests, IDLE, Tk,
/// the static libpython, bytecode caches), to keep the image small.
fn copy_stdlib(src: &Path, dest: &Path) {
    const SKIP: &[&str] = &[
        "__pycache__",
        "test",
        "idlelib",
        "tkinter",
        "lib2to3",
        "pydoc_data",
        "ensurepip",
        "distutils",
        "turtledemo",
        "site-packages",
        "dist-packages",
    ];
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if SKIP.contains(&name.as_str()) || name.starts_with("config-") {
            continue;
        }
        let ft = e.file_type().unwrap();
        let to = dest.join(&name);
        if ft.is_dir() {
            copy_stdlib(&e.path(), &to);
        } else if ft.is_symlink() {
            let _ = std::fs::remove_file(&to);
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

const APP_PY: &str = r#"
import errno, hashlib, json, os, sqlite3
from http.server import HTTPServer, BaseHTTPRequestHandler

db = sqlite3.connect(":memory:")
db.execute("create table kv (k text primary key, v text)")
db.execute("insert into kv values (?, ?)", ("greeting", "hello from python on kiln"))
(value,) = db.execute("select v from kv where k = 'greeting'").fetchone()
digest = hashlib.sha256(value.encode()).hexdigest()
try:
    os.fork()
    fork = "forked"
except OSError as e:
    fork = errno.errorcode[e.errno]

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "value": value, "sha256": digest,
                           "fork": fork}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = HTTPServer(("0.0.0.0", 8000), Handler)
print("serving on 8000", flush=True)
server.serve_forever()
"#;

#[test]
fn python_with_extension_modules() {
    let python = std::fs::canonicalize("/usr/bin/python3").unwrap();
    let version = python.file_name().unwrap().to_string_lossy().into_owned(); // python3.11
    let dir = scratch("dynamic/python");
    let stdlib = dir.join(&version);
    copy_stdlib(&Path::new("/usr/lib").join(&version), &stdlib);
    std::fs::write(dir.join("app.py"), APP_PY).unwrap();
    let dynload = format!("/usr/lib/{version}/lib-dynload");
    let module = |name: &str| {
        std::fs::read_dir(&dynload)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{name}.cpython-"))
            })
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let (sqlite, hashlib) = (module("_sqlite3"), module("_hashlib"));
    let img = build_image(
        "python3",
        &[
            "--elf",
            python.to_str().unwrap(),
            "--file",
            &format!("{}:/usr/lib/{version}", stdlib.display()),
            "--file",
            &format!("{}:/app/app.py", dir.join("app.py").display()),
            // Extension modules are opened with dlopen: their libraries (libsqlite3,
            // libcrypto) are packed by naming the modules.
            "--lib",
            &sqlite,
            "--lib",
            &hashlib,
            "--arg",
            "/app/app.py",
        ],
    );
    let port = free_port();
    let _guest = Guest::boot(
        &img,
        &["--memory", "256M", "-p", &format!("{port}:8000")],
        "serving on 8000",
    );
    let body = wait_for_http(&format!("http://127.0.0.1:{port}/kiln"));
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let want = kiln_toolchain::image::sha256_hex(b"hello from python on kiln");
    assert_eq!(doc["path"], "/kiln", "{body}");
    assert_eq!(doc["value"], "hello from python on kiln", "{body}");
    assert_eq!(doc["sha256"], want.as_str(), "{body}");
    // fork is a clear ENOSYS, not a hang.
    assert_eq!(doc["fork"], "ENOSYS", "{body}");
}

#[test]
fn rust_and_c_examples_linked_dynamically() {
    let img = build_image("hello-dynamic", &["--example", "hello", "--dynamic"]);
    let r = run_image(&img, &["--", "--exit", "3"]);
    assert_eq!(r.status, 3, "{r:?}");
    assert!(r.out().starts_with("hello from kiln\n"), "{r:?}");
    let i = kiln(&["inspect", img.to_str().unwrap()]);
    assert!(!i.out().contains("crt-static"), "{i:?}");
    assert!(
        i.out().contains("/lib/x86_64-linux-gnu/libc.so.6 libc6"),
        "{i:?}"
    );
    let img = build_image("c-hello-dynamic", &["--example", "c-hello", "--dynamic"]);
    let r = run_image(&img, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().starts_with("hello from C\n"), "{r:?}");
    // --dynamic is about building: a prebuilt program is taken as it is.
    let r = kiln(&["build-image", "--elf", "/usr/bin/ls", "--dynamic"]);
    assert_ne!(r.status, 0, "{r:?}");
}

#[test]
fn runpath_origin_libraries_go_next_to_the_program() {
    let dir = scratch("dynamic/origin");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    let src = dir.join("greet.c");
    std::fs::write(
        &src,
        "const char *greet(void){return \"greetings via $ORIGIN\";}\n",
    )
    .unwrap();
    let st = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join("lib/libgreet.so"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let prog = gcc(
        &dir.join("bin"),
        "greeter",
        "#include <stdio.h>\nconst char *greet(void);\nint main(void){puts(greet());return 0;}\n",
        &[
            "-L",
            dir.join("lib").to_str().unwrap(),
            "-lgreet",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib",
        ],
    );
    // In the image the program is /bin/greeter, so $ORIGIN/../lib is /lib (Debian's
    // /lib -> usr/lib link, packed for libc, leads on to /usr/lib).
    let img = build_image("greeter", &["--elf", prog.to_str().unwrap()]);
    let r = run_image(&img, &[]);
    assert_eq!(
        (r.status, r.out().as_str()),
        (0, "greetings via $ORIGIN\n"),
        "{r:?}"
    );
}

#[test]
fn a_plugin_added_with_file_brings_the_libraries_it_needs() {
    // The program dlopens a plugin it does not link; the plugin needs zlib, which nothing
    // else in the image does (the JDK's libjvm.so and libstdc++ are the same case).
    let dir = scratch("dynamic/plugin");
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    let src = dir.join("zplugin.c");
    std::fs::write(
        &src,
        "const char *zlibVersion(void);\nconst char *plugin_zlib(void){return zlibVersion();}\n",
    )
    .unwrap();
    let st = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join("plugins/zplugin.so"))
        .arg(&src)
        // zlib itself (Debian's essential zlib1g), not its development package.
        .arg("/usr/lib/x86_64-linux-gnu/libz.so.1")
        .status()
        .unwrap();
    assert!(st.success());
    let prog = gcc(
        &dir,
        "host",
        r#"#include <dlfcn.h>
#include <stdio.h>
int main(void) {
    void *h = dlopen("/opt/plugins/zplugin.so", RTLD_NOW);
    if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
    const char *(*f)(void) = (const char *(*)(void))dlsym(h, "plugin_zlib");
    printf("zlib %s\n", f());
    return 0;
}
"#,
        &["-ldl"],
    );
    let plugins = format!("{}:/opt/plugins", dir.join("plugins").display());
    let img = build_image(
        "plugin-host",
        &["--elf", prog.to_str().unwrap(), "--file", &plugins],
    );
    let r = run_image(&img, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().starts_with("zlib 1."), "{r:?}");
}

const TIMERS: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>
static volatile int ticks;
static void on_alarm(int s) { (void)s; ticks++; }
int main(void) {
    signal(SIGALRM, on_alarm);
    struct itimerval it = { { 0, 50000 }, { 0, 50000 } };
    setitimer(ITIMER_REAL, &it, 0);
    while (ticks < 3) pause();
    struct itimerval off = { { 0, 0 }, { 0, 0 } }, was;
    setitimer(ITIMER_REAL, &off, &was);
    printf("ticks=%d interval=%ld\n", ticks, (long)was.it_interval.tv_usec);
    fflush(stdout);
    signal(SIGALRM, SIG_DFL);
    alarm(1);
    pause();
    return 0;
}
"#;

#[test]
fn interval_timers_and_alarm_send_sigalrm() {
    let dir = scratch("dynamic");
    let prog = gcc(&dir, "timers", TIMERS, &[]);
    let img = build_image("timers", &["--elf", prog.to_str().unwrap()]);
    let r = run_image(&img, &[]);
    // The default action of SIGALRM ends the program: 128 + 14.
    assert_eq!(
        (r.status, r.out().as_str()),
        (142, "ticks=3 interval=50000\n"),
        "{r:?}"
    );
}

/// Spins 0.3 s on the main thread, sleeps 0.6 s, spins 0.3 s on a second thread, then
/// reads its CPU time every way glibc programs do: the CPU-time clocks (process, thread,
/// another thread's through `pthread_getcpuclockid`), `getrusage`, `times` and
/// `/proc/self/stat`. Sleeping must cost none of it.
const CPU_TIME: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <time.h>
#include <unistd.h>
static double now(clockid_t c) {
    struct timespec t;
    if (clock_gettime(c, &t)) { perror("clock_gettime"); exit(9); }
    return t.tv_sec + t.tv_nsec / 1e9;
}
static volatile unsigned long sink;
static void spin(double secs) {
    double end = now(CLOCK_MONOTONIC) + secs;
    while (now(CLOCK_MONOTONIC) < end)
        for (int i = 0; i < 10000; i++) sink += i;
}
static void *worker(void *a) { (void)a; spin(0.3); return 0; }
int main(void) {
    double wall0 = now(CLOCK_MONOTONIC);
    spin(0.3);
    usleep(600000);
    pthread_t t;
    pthread_create(&t, 0, worker, 0);
    clockid_t tc;
    if (pthread_getcpuclockid(t, &tc)) { puts("pthread_getcpuclockid failed"); return 2; }
    usleep(100000);
    double worker_mid = now(tc);
    pthread_join(t, 0);
    double wall = now(CLOCK_MONOTONIC) - wall0;
    double proc = now(CLOCK_PROCESS_CPUTIME_ID), self = now(CLOCK_THREAD_CPUTIME_ID);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    double sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    struct tms tm;
    times(&tm);
    double hz = sysconf(_SC_CLK_TCK), tms = (tm.tms_utime + tm.tms_stime) / hz;
    unsigned long ut = 0, st = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f || fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) {
        puts("/proc/self/stat unreadable");
        return 3;
    }
    double stat = (ut + st) / hz;
    fprintf(stderr, "wall=%.3f process=%.3f thread=%.3f worker_mid=%.3f user=%.3f sys=%.3f times=%.3f stat=%.3f\n",
            wall, proc, self, worker_mid, user, sys, tms, stat);
    int ok = proc >= 0.55 && proc <= wall - 0.45          /* both spins, not the sleep */
        && self >= 0.28 && self <= proc - 0.25             /* the main thread's spin */
        && worker_mid > 0.02 && worker_mid < 0.3           /* the worker, while it ran */
        && user + sys <= proc + 0.01 && user >= 0.5 && sys < user
        && tms > proc - 0.05 && tms <= proc + 0.01
        && stat > proc - 0.05 && stat <= proc + 0.01;
    puts(ok ? "cpu time ok" : "cpu time wrong");
    return 0;
}
"#;

/// `ITIMER_PROF` every 10 ms of CPU time, as profilers arm it (gperftools, Go's pprof when
/// `timer_create` on a CPU clock is refused): 0.5 s of spinning takes about 50 `SIGPROF`s,
/// a 0.5 s sleep none; then a one-shot `ITIMER_VIRTUAL` with no handler ends the program.
const PROF_TIMER: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
static volatile int ticks;
static volatile unsigned long sink;
static void on_prof(int sig) { (void)sig; ticks++; }
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static void spin(double secs) {
    double end = now() + secs;
    while (now() < end)
        for (int i = 0; i < 10000; i++) sink += i;
}
int main(void) {
    signal(SIGPROF, on_prof);
    struct itimerval every = {{0, 10000}, {0, 10000}}, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &every, 0);
    spin(0.5);
    int spun = ticks;
    usleep(500000);
    int slept = ticks - spun;
    setitimer(ITIMER_PROF, &off, 0);
    printf("%s\n", spun >= 30 && spun <= 70 && slept <= 1 ? "prof ok" : "prof wrong");
    fprintf(stderr, "SIGPROF while spinning %d, while sleeping %d\n", spun, slept);
    fflush(stdout);
    struct itimerval once = {{0, 0}, {0, 100000}};
    setitimer(ITIMER_VIRTUAL, &once, 0);
    spin(5);
    puts("SIGVTALRM did not come");
    return 0;
}
"#;

#[test]
fn cpu_time_interval_timers_tick_while_the_program_runs() {
    let dir = scratch("dynamic");
    let prog = gcc(&dir, "proftimer", PROF_TIMER, &[]);
    let img = build_image("proftimer", &["--elf", prog.to_str().unwrap()]);
    let r = run_image(&img, &[]);
    // SIGVTALRM's default action ends the program: 128 + 26.
    assert_eq!((r.status, r.out().as_str()), (154, "prof ok\n"), "{r:?}");
    assert!(
        r.stderr.contains("program killed by SIGVTALRM (signal 26)"),
        "{r:?}"
    );
}

#[test]
fn cpu_time_counts_what_the_threads_ran_not_what_they_slept() {
    let dir = scratch("dynamic");
    let prog = gcc(&dir, "cputime", CPU_TIME, &["-pthread"]);
    let img = build_image("cputime", &["--elf", prog.to_str().unwrap()]);
    let r = run_image(&img, &[]);
    assert_eq!((r.status, r.out().as_str()), (0, "cpu time ok\n"), "{r:?}");
}

/// A DNS server on a thread of the program (127.0.0.1:53, an A record for every name),
/// asked through glibc's resolver: `getaddrinfo` and `gethostbyname`.
const RESOLVER: &str = r#"
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
static int srv;
static void *serve(void *arg) {
    (void)arg;
    unsigned char q[512], a[600];
    for (;;) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        int n = recvfrom(srv, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
        if (n < 12) continue;
        int i = 12;
        while (i < n && q[i]) i += q[i] + 1;
        i += 5;
        if (i > n) continue;
        int qtype = (q[i - 4] << 8) | q[i - 3];
        memcpy(a, q, i);
        a[2] = 0x81; a[3] = 0x80;
        a[6] = 0; a[7] = qtype == 1;
        memset(a + 8, 0, 4);
        int k = i;
        if (qtype == 1) {
            unsigned char rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 2, 3};
            memcpy(a + k, rr, sizeof rr);
            k += sizeof rr;
        }
        sendto(srv, a, k, 0, (struct sockaddr *)&from, fl);
    }
    return 0;
}
int main(void) {
    srv = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(srv, (struct sockaddr *)&sa, sizeof sa)) { perror("bind"); return 1; }
    pthread_t t;
    pthread_create(&t, 0, serve, 0);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    int r = getaddrinfo("service.kiln.test", "80", &hints, &res);
    if (r) { printf("getaddrinfo: %s\n", gai_strerror(r)); return 2; }
    char buf[32];
    inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, buf, sizeof buf);
    printf("getaddrinfo: %s\n", buf);
    struct hostent *h = gethostbyname("other.kiln.test");
    if (!h) { printf("gethostbyname: %s\n", hstrerror(h_errno)); return 3; }
    inet_ntop(AF_INET, h->h_addr_list[0], buf, sizeof buf);
    printf("gethostbyname: %s\n", buf);
    /* Any family, no AI_ADDRCONFIG: the A and AAAA questions go out in one sendmmsg. */
    struct addrinfo any = {.ai_socktype = SOCK_STREAM}, *res2;
    r = getaddrinfo("third.kiln.test", "80", &any, &res2);
    if (r) { printf("getaddrinfo AF_UNSPEC: %s\n", gai_strerror(r)); return 4; }
    inet_ntop(AF_INET, &((struct sockaddr_in *)res2->ai_addr)->sin_addr, buf, sizeof buf);
    printf("getaddrinfo AF_UNSPEC: %s\n", buf);
    return 0;
}
"#;

#[test]
fn glibc_resolver_asks_a_dns_server() {
    // glibc's resolver sets IP_RECVERR on its socket and gives up on the server, without
    // a packet, when that fails (every name lookup of a dynamically linked program did).
    let dir = scratch("dynamic");
    let prog = gcc(&dir, "resolver", RESOLVER, &["-pthread"]);
    let img = build_image("resolver", &["--elf", prog.to_str().unwrap()]);
    let r = run_image(&img, &["--dns", "127.0.0.1", "--trace=setsockopt,sendmmsg"]);
    assert_eq!(
        (r.status, r.out().as_str()),
        (
            0,
            "getaddrinfo: 10.1.2.3\ngethostbyname: 10.1.2.3\ngetaddrinfo AF_UNSPEC: 10.1.2.3\n"
        ),
        "{r:?}"
    );
    // Both questions in one call (it was ENOSYS, and such lookups failed).
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("sendmmsg(") && l.ends_with("= 2")),
        "{}",
        r.stderr
    );
    // setsockopt(fd, SOL_IP, IP_RECVERR, ...) = 0
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("setsockopt(") && l.contains(", 0, 11, ") && l.ends_with("= 0")),
        "{}",
        r.stderr
    );
}

const POSIX_TIMERS: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static volatile int ticks, wrong;
static volatile int thread_calls;
static void on_tick(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    if (sig != SIGRTMIN + 1 || si->si_code != SI_TIMER || si->si_value.sival_int != 42) wrong++;
    ticks++;
}
static void on_thread(union sigval v) { thread_calls += v.sival_int; }
int main(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_tick;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGRTMIN + 1, &sa, 0);
    /* A signal with a value (Ruby's timer thread, haproxy's watchdog). */
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGRTMIN + 1;
    ev.sigev_value.sival_int = 42;
    timer_t t;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t)) { perror("timer_create"); return 1; }
    struct itimerspec its = { { 0, 20000000 }, { 0, 20000000 } };
    timer_settime(t, 0, &its, 0);
    while (ticks < 5) pause();
    struct itimerspec left;
    timer_gettime(t, &left);
    timer_delete(t);
    printf("ticks=%d wrong=%d interval=%ld\n", ticks, wrong, left.it_interval.tv_nsec);
    /* SIGEV_THREAD: glibc's helper thread runs the function (SIGEV_THREAD_ID underneath). */
    struct sigevent tev = {0};
    tev.sigev_notify = SIGEV_THREAD;
    tev.sigev_notify_function = on_thread;
    tev.sigev_value.sival_int = 10;
    if (timer_create(CLOCK_REALTIME, &tev, &t)) { perror("timer_create thread"); return 1; }
    struct itimerspec once = { { 0, 0 }, { 0, 30000000 } };
    timer_settime(t, 0, &once, 0);
    for (int i = 0; i < 200 && thread_calls == 0; i++) usleep(10000);
    printf("thread_calls=%d\n", thread_calls);
    return 0;
}
"#;

#[test]
fn posix_timers_signal_with_their_value_and_run_sigev_thread_functions() {
    let dir = scratch("dynamic");
    let prog = gcc(&dir, "posix-timers", POSIX_TIMERS, &["-pthread"]);
    let img = build_image("posix-timers", &["--elf", prog.to_str().unwrap()]);
    let r = run_image(&img, &[]);
    assert_eq!(
        (r.status, r.out().as_str()),
        (0, "ticks=5 wrong=0 interval=20000000\nthread_calls=10\n"),
        "{r:?}"
    );
}

const LOCKS_AND_LIMITS: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <unistd.h>
static int holder;
static void *release_later(void *arg) {
    (void)arg;
    usleep(100000);
    close(holder); /* the last close lets the lock go */
    return 0;
}
int main(void) {
    holder = open("/tmp/app.lock", O_RDWR | O_CREAT, 0600);
    int second = open("/tmp/app.lock", O_RDWR);
    int a = flock(holder, LOCK_EX | LOCK_NB);
    int b = flock(second, LOCK_EX | LOCK_NB);
    printf("first=%d second=%d (%s)\n", a, b, b ? strerror(errno) : "");
    pthread_t t;
    pthread_create(&t, 0, release_later, 0);
    int c = flock(second, LOCK_EX); /* waits for the other thread's close */
    printf("after the close=%d\n", c);
    pthread_join(t, 0);
    errno = 0;
    int n = nice(5);
    printf("nice=%d getpriority=%d\n", n, getpriority(PRIO_PROCESS, 0));
    printf("nprocs=%d conf=%ld\n", get_nprocs(), sysconf(_SC_NPROCESSORS_CONF));
    int full = open("/dev/full", O_WRONLY);
    ssize_t w = write(full, "x", 1);
    printf("full=%zd (%s)\n", w, strerror(errno));
    struct rlimit rl = {4096, 4096};
    setrlimit(RLIMIT_NOFILE, &rl);
    int last = -1;
    for (int i = 0; i < 3000; i++) last = dup(0);
    printf("fds past 1024: %d\n", last);
    return 0;
}
"#;

#[test]
fn flock_nice_cpu_count_dev_full_and_many_descriptors() {
    let dir = scratch("dynamic");
    let prog = gcc(&dir, "locks", LOCKS_AND_LIMITS, &["-pthread"]);
    let img = build_image("locks", &["--elf", prog.to_str().unwrap()]);
    let r = run_image(&img, &["--cpus", "2"]);
    assert_eq!(
        (r.status, r.out().as_str()),
        (
            0,
            "first=0 second=-1 (Resource temporarily unavailable)\n\
             after the close=0\n\
             nice=5 getpriority=5\n\
             nprocs=2 conf=2\n\
             full=-1 (No space left on device)\n\
             fds past 1024: 3004\n"
        ),
        "{r:?}"
    );
}

/// POSIX shared memory and named semaphores: writable shared mappings of `/dev/shm` files;
/// a sealed `memfd_create` file.
const SHARED_MEMORY: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static sem_t *ping, *pong;
static int *counter;

static void *player(void *arg) {
    for (int i = 0; i < 1000; i++) {
        sem_wait(ping);
        (*counter)++;
        sem_post(pong);
    }
    return arg;
}

int main(void) {
    int fd = shm_open("/kiln-test", O_CREAT | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, 8192) != 0) { perror("shm_open"); return 1; }
    char *map = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) { perror("mmap"); return 1; }
    strcpy(map + 4096, "written through the mapping");
    char buf[64] = {0};
    pread(fd, buf, 27, 4096);
    printf("read: %s\n", buf);
    pwrite(fd, "WRITTEN", 7, 4096);
    printf("mapped: %.27s\n", map + 4096);
    counter = (int *)map;
    ping = sem_open("/kiln-ping", O_CREAT, 0600, 0);
    pong = sem_open("/kiln-pong", O_CREAT, 0600, 0);
    if (ping == SEM_FAILED || pong == SEM_FAILED) { perror("sem_open"); return 1; }
    sem_unlink("/kiln-ping");
    sem_unlink("/kiln-pong");
    pthread_t t;
    pthread_create(&t, 0, player, 0);
    for (int i = 0; i < 1000; i++) {
        sem_post(ping);
        sem_wait(pong);
    }
    pthread_join(t, 0);
    msync(map, 8192, MS_SYNC);
    int c = 0;
    pread(fd, &c, sizeof c, 0);
    printf("counter %d in the file %d\n", *counter, c);
    munmap(map, 8192);
    shm_unlink("/kiln-test");
    int mfd = memfd_create("kiln", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    write(mfd, "memfd!", 6);
    fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK);
    char link[64], target[64] = {0};
    snprintf(link, sizeof link, "/proc/self/fd/%d", mfd);
    readlink(link, target, sizeof target - 1);
    int shrink = ftruncate(mfd, 1);
    printf("memfd: %s seals %d shrink %d\n", target, fcntl(mfd, F_GET_SEALS), shrink);
    return 0;
}
"#;

#[test]
fn shm_open_sem_open_and_sqlite_wal_share_tmp_files_through_mappings() {
    let dir = scratch("dynamic");
    let prog = gcc(&dir, "shm", SHARED_MEMORY, &["-pthread"]);
    let img = build_image("shm", &["--elf", prog.to_str().unwrap()]);
    let r = run_image(&img, &[]);
    assert_eq!(
        (r.status, r.out().as_str()),
        (
            0,
            "read: written through the mapping\n\
             mapped: WRITTEN through the mapping\n\
             counter 1000 in the file 1000\n\
             memfd: /memfd:kiln (deleted) seals 2 shrink -1\n"
        ),
        "{r:?}"
    );
    // SQLite's WAL mode keeps its index in a shared mapping of the `-shm` file.
    let img = build_image("sqlite3-wal", &["--elf", "/usr/bin/sqlite3"]);
    let sql = "pragma journal_mode=wal; create table t(a); insert into t values (1),(2),(39); \
               select sum(a) from t; pragma wal_checkpoint; select count(*) from t;";
    let r = run_image(&img, &["--", "/tmp/w.db", sql]);
    assert_eq!(
        (r.status, r.out().as_str()),
        (0, "wal\n42\n0|3|3\n3\n"),
        "{r:?}"
    );
}
