//! The `record --replay`, `report` and `compare` commands through the
//! binary: outputs equal the golden files, exit codes are documented ones,
//! and bad input (empty, garbage, truncated, wrong version, unreadable,
//! full disk) gives an error naming the file and exit 2, never a panic or
//! a truncated output. No root needed.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::{golden_dir, scratch};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_uacce-trace"))
}

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running uacce-trace: {e}"))
}

fn golden(name: &str) -> PathBuf {
    golden_dir().join(name)
}

fn s(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_bad_input(o: &Output, file: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(err.contains(file), "stderr does not name {file}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn replaying_the_raw_recording_reproduces_every_golden_output() {
    let dir = scratch("cli-replay");
    for run_name in ["before", "after"] {
        let raw = golden(&format!("{run_name}.utrace"));
        for ext in ["hlog", "json", "csv", "utrace"] {
            let out = dir.join(format!("{run_name}.{ext}"));
            let o = run(&["record", "--replay", s(&raw), "-o", s(&out)]);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            let got = fs::read(&out).unwrap_or_else(|e| panic!("{e}"));
            let want =
                fs::read(golden(&format!("{run_name}.{ext}"))).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                got == want,
                "record --replay {run_name} -o .{ext} differs from the golden file"
            );
        }
    }
    // From standard input, with an explicit format.
    let out = dir.join("stdin.out");
    let o = bin()
        .args(["record", "--replay", "-", "--format", "csv", "-o", s(&out)])
        .stdin(fs::File::open(golden("before.utrace")).unwrap_or_else(|e| panic!("{e}")))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(fs::read(&out).ok(), fs::read(golden("before.csv")).ok());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn report_and_compare_exit_codes() {
    let o = run(&[
        "report",
        s(&golden("before.utrace")),
        s(&golden("after.hlog")),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("pin ledger") && text.contains("after.hlog (hlog)"),
        "{text}"
    );

    let o = run(&[
        "compare",
        s(&golden("before.hlog")),
        s(&golden("after.hlog")),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = run(&[
        "compare",
        s(&golden("after.json")),
        s(&golden("before.utrace")),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["goal_met"], serde_json::Value::Bool(false));
    // An absolute goal the candidate meets (no faults at all) is met.
    let o = run(&[
        "compare",
        s(&golden("before.json")),
        s(&golden("after.utrace")),
        "--max",
        "50us",
        "--metric",
        "p99",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // Usage errors are clap's exit 2.
    assert_eq!(run(&["compare", "a"]).status.code(), Some(2));
    assert_eq!(
        run(&["compare", "a", "b", "--metric", "p42"]).status.code(),
        Some(2)
    );
}

#[test]
fn bad_input_names_the_file_and_exits_2() {
    let dir = scratch("cli-bad");
    let raw = fs::read(golden("before.utrace")).unwrap_or_else(|e| panic!("{e}"));
    let hlog = fs::read(golden("before.hlog")).unwrap_or_else(|e| panic!("{e}"));
    let mut wrong_version = raw.clone();
    wrong_version[8] = 42;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.hlog", Vec::new()),
        ("garbage.bin", b"\x00\x01\x02garbage\xff\xfe".to_vec()),
        ("text.txt", b"hello, world\n".to_vec()),
        ("cut.utrace", raw[..raw.len() / 2].to_vec()),
        ("noend.utrace", raw[..raw.len() - 13].to_vec()),
        ("version.utrace", wrong_version),
        ("cut.hlog", hlog[..hlog.len() * 2 / 3].to_vec()),
        (
            "data.csv",
            fs::read(golden("before.csv")).unwrap_or_default(),
        ),
        ("bad.json", b"{\"start\":0}\n".to_vec()),
    ];
    for (name, bytes) in &cases {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_bad_input(&run(&["report", s(&p)]), name);
        assert_bad_input(&run(&["compare", s(&golden("before.hlog")), s(&p)]), name);
        assert_bad_input(&run(&["compare", s(&p), s(&golden("before.hlog"))]), name);
        if name.ends_with(".utrace") || name.ends_with(".bin") {
            let out = dir.join(format!("{name}.out.hlog"));
            assert_bad_input(&run(&["record", "--replay", s(&p), "-o", s(&out)]), name);
            assert!(!out.exists(), "a partial output was left for {name}");
        }
    }
    for missing in ["/nonexistent/run.hlog", "/"] {
        assert_bad_input(&run(&["report", missing]), missing);
        assert_bad_input(
            &run(&["record", "--replay", missing, "-o", s(&dir.join("x.hlog"))]),
            missing,
        );
    }
    // Unwritable output and a full disk name the output file.
    let raw_path = golden("before.utrace");
    assert_bad_input(
        &run(&[
            "record",
            "--replay",
            s(&raw_path),
            "-o",
            "/nonexistent/dir/out.hlog",
        ]),
        "/nonexistent/dir/out.hlog",
    );
    assert_bad_input(
        &run(&["record", "--replay", s(&raw_path), "-o", "/dev/full"]),
        "/dev/full",
    );
    // Nothing but the outputs we asked for (no temporary files) is left.
    let mut left: Vec<String> = fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    left.retain(|n| n.starts_with('.'));
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let _ = fs::remove_dir_all(&dir);
}
