//! `hearth-wasm-edge new <dir> [--http]`: a policy crate that builds and
//! passes its cases as generated — `Cargo.toml` (the SDK, a size-optimised
//! release profile, the `cases` dev-dependency), `src/lib.rs` (a small
//! allow-list policy and the native test that runs the case file),
//! `cases.yaml` and `dev.yaml` (an edge on loopback that hot-reloads the
//! built component). The files are templates in `host/templates/policy/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// Where the SDK is in the checkout this binary was built from.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

const CARGO_TOML: &str = include_str!("../../templates/policy/Cargo.toml.in");
const LIB_RS: &str = include_str!("../../templates/policy/lib.rs.in");
const HTTP_LIB_RS: &str = include_str!("../../templates/policy/http_lib.rs.in");
const CASES: &str = include_str!("../../templates/policy/cases.yaml.in");
const HTTP_CASES: &str = include_str!("../../templates/policy/http_cases.yaml.in");
const DEV_YAML: &str = include_str!("../../templates/policy/dev.yaml.in");
const GITIGNORE: &str = "/target\n/Cargo.lock\n";

/// Arguments of `new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The directory to create (or an empty one); its name becomes the
    /// crate's.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// An HTTP policy (the `http-policy` world: `decide` and `on-request`).
    #[arg(long)]
    pub http: bool,
    /// The SDK crate (`guest-sdk` of a hearth-wasm-edge checkout); default:
    /// the checkout this binary was built from.
    #[arg(long, value_name = "DIR")]
    pub sdk: Option<PathBuf>,
}

/// Writes the crate; refuses a directory that exists and is not empty.
pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        anyhow::bail!(
            "{} is not empty: give a new or empty directory",
            dir.display()
        );
    }
    let name = crate_name(dir)?;
    let sdk = sdk_path(args.sdk.as_deref())?;
    let features = if args.http { r#""http""# } else { "" };
    let dev_features = if args.http {
        r#""cases", "http""#
    } else {
        r#""cases""#
    };
    // The HTTP policy terminates into a route set.
    let http_routes = if args.http {
        "http_routes:\n  web:\n    routes: [ { backend: app } ]\n"
    } else {
        ""
    };
    let fill = |template: &str| {
        template
            .replace("{name}", &name)
            .replace("{crate}", &name.replace('-', "_"))
            .replace("{sdk}", &toml_string(&sdk))
            .replace("{features}", features)
            .replace("{dev_features}", dev_features)
            .replace("{http_routes}", http_routes)
    };
    let (lib, cases) = if args.http {
        (HTTP_LIB_RS, HTTP_CASES)
    } else {
        (LIB_RS, CASES)
    };
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(lib)),
        ("cases.yaml", fill(cases)),
        ("dev.yaml", fill(DEV_YAML)),
        (".gitignore", GITIGNORE.to_owned()),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let kind = if args.http { "HTTP policy" } else { "policy" };
    println!("created the {kind} crate {name} in {}", dir.display());
    println!("  cd {}", dir.display());
    println!("  hearth-wasm-edge dev        # build, run cases.yaml, serve; again on every save");
    println!("  cargo test                  # the cases, natively");
    Ok(ExitCode::SUCCESS)
}

/// The crate name from the directory's last component: lowercase letters,
/// digits, `-` and `_`, starting with a letter.
fn crate_name(dir: &Path) -> anyhow::Result<String> {
    let last = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: no directory name to name the crate", dir.display()))?;
    let valid = last.starts_with(|c: char| c.is_ascii_lowercase())
        && last
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    anyhow::ensure!(
        valid,
        "{last:?} is not a crate name: use lowercase letters, digits, - and _, starting with a letter"
    );
    Ok(last.to_owned())
}

/// The SDK directory, absolute, checked to be the SDK.
fn sdk_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = given.unwrap_or(Path::new(BUILT_SDK));
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).with_context(|| {
        format!(
            "no SDK at {} (pass --sdk DIR, the guest-sdk directory of a hearth-wasm-edge checkout)",
            dir.display()
        )
    })?;
    anyhow::ensure!(
        manifest.contains("name = \"hearth-edge-sdk\""),
        "{} is not the hearth-edge-sdk crate",
        dir.display()
    );
    Ok(std::fs::canonicalize(dir)?)
}

/// `path` as a TOML basic string's content.
fn toml_string(path: &Path) -> String {
    path.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_are_checked() {
        assert_eq!(crate_name(Path::new("/x/my-policy")).unwrap(), "my-policy");
        for bad in ["/x/My", "/x/9lives", "/x/a b", "/x/ü"] {
            assert!(crate_name(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
