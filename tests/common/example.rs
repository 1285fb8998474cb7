//! An example program run as a separate process, as a user runs it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

/// An example running as a child process; killed on drop.
pub struct ExampleProcess {
    pub child: Option<Child>,
    /// `http` or `https` (or `ws`), from the first line.
    pub scheme: String,
    /// The bound address, from the first line.
    pub addr: String,
    /// The rest of what it prints.
    stdout: BufReader<ChildStdout>,
}

impl ExampleProcess {
    /// The next line it prints, without its line break.
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }
}

impl Drop for ExampleProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Builds example `name` with `features` once per test binary (a no-op when
/// `cargo test` already did), and returns its path.
pub fn build(name: &str, features: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap();
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--example", name, "--features", features])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the {name} example failed");
        built.push(name.to_owned());
    }
    // target/debug/deps/<this test> -> target/debug/examples/<name>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join(name)
}

/// Starts example `name` with `--listen 127.0.0.1:0` and `args`, and reads
/// its first line, `listening on SCHEME://ADDR`.
pub fn start(name: &str, features: &str, args: &[&str]) -> ExampleProcess {
    let binary = build(name, features);
    let mut child = Command::new(&binary)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    let (scheme, addr) = first
        .trim_end()
        .strip_prefix("listening on ")
        .and_then(|url| url.split_once("://"))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    assert!(addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"), "{addr}");
    ExampleProcess { child: Some(child), scheme: scheme.to_owned(), addr: addr.to_owned(), stdout }
}
