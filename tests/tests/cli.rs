//! The command line: `validate` on good and bad files (exit codes, every problem
//! with file:line:column), `run` refusing a bad file, `--help` and `--version`.

use std::process::Command;

use tests::quorumlb_bin;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:18080"
protocol = "http"
default_pool = "web"

[[pool]]
name = "web"
algorithm = "weighted_round_robin"
  [[pool.backend]]
  address = "127.0.0.1:19001"
  weight = 3
"#;

#[test]
fn validate_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "good.toml", GOOD);
    let out = Command::new(quorumlb_bin()).args(["validate", "--config"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
}

#[test]
fn validate_lists_every_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let bad =
        GOOD.replace("127.0.0.1:19001", "10.0.0.300:80").replace("default_pool = \"web\"", "default_pool = \"nope\"");
    let f = write(&dir, "bad.toml", &bad);
    let out = Command::new(quorumlb_bin()).args(["validate", "--config"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let name = f.display().to_string();
    assert!(err.contains(&format!("{name}:6:16: default_pool \"nope\" is not a defined pool")), "{err}");
    assert!(err.contains(&format!("{name}:12:13: bad address \"10.0.0.300:80\"")), "{err}");
}

#[test]
fn validate_reports_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "typo.toml", &GOOD.replace("weight = 3", "wieght = 3"));
    let out = Command::new(quorumlb_bin()).args(["validate", "--config"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":13:") && err.contains("wieght"), "{err}");
}

#[test]
fn run_refuses_a_bad_file_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = tests::free_port();
    let bad = GOOD.replace("127.0.0.1:18080", &format!("127.0.0.1:{port}")).replace("weight = 3", "weight = 0");
    let f = write(&dir, "bad.toml", &bad);
    let out = Command::new(quorumlb_bin()).args(["run", "--config"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weight must be between 1 and 1000"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "a listener was opened");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = Command::new(quorumlb_bin()).args(["validate", "--config", "/nonexistent/q.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/q.toml: cannot read file"));
}

#[test]
fn help_and_version() {
    let out = Command::new(quorumlb_bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("quorumlb "));
    let out = Command::new(quorumlb_bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["run", "validate", "demo"] {
        assert!(help.contains(sub), "{help}");
    }
}
