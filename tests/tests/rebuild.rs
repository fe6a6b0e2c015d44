//! Editing a spec rebuilds the crate that uses it: the macros `include_bytes!`
//! the spec, so cargo tracks it like a source file. This test builds a small
//! crate twice with a different spec each time and checks that the second
//! build saw the new spec. (It builds with cargo in its own target directory
//! under the workspace's `target/`, so the first run takes a minute.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn cargo_build(dir: &Path, target: &Path) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        // The human format keeps the notes (a linker's own output, say) that the
        // short one drops, so a failure unrelated to the spec explains itself.
        .args(["build", "--quiet", "--offline"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn editing_the_spec_rebuilds_the_crate() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap();
    let base = workspace.join("target/rebuild-probe");
    let crate_dir = base.join("crate");
    std::fs::create_dir_all(crate_dir.join("src")).unwrap();
    let macros = workspace.join("integration-macros");
    std::fs::write(
        crate_dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"rebuild-probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\nintegration-macros = {{ path = {:?} }}\n\n[workspace]\n",
            macros.display().to_string()
        ),
    )
    .unwrap();
    std::fs::copy(workspace.join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();
    // The spec is invalid on purpose: the error message shows which version
    // of the spec the macro read, without compiling the runtime.
    std::fs::write(
        crate_dir.join("src/main.rs"),
        "integration_macros::integration!(\"spec.toml\");\nfn main() {}\n",
    )
    .unwrap();
    let spec: PathBuf = crate_dir.join("spec.toml");
    let target = base.join("target");

    std::fs::write(&spec, "[integration]\nname = \"first_version\"\n").unwrap();
    let first = cargo_build(&crate_dir, &target);
    assert!(
        first.contains("integration name `first_version` must be PascalCase"),
        "first build:\n{first}"
    );

    // Make sure the new file's mtime differs even on coarse-grained filesystems.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&spec, "[integration]\nname = \"second_version\"\n").unwrap();
    let second = cargo_build(&crate_dir, &target);
    assert!(
        second.contains("integration name `second_version` must be PascalCase"),
        "second build did not see the edit:\n{second}"
    );
    assert!(!second.contains("first_version"), "second build:\n{second}");
}
