//! The image check: the runner image named by `--gha-image` (or `default_image`) must be a
//! directory that resolves inside `image_root` (a CVMFS `unpacked.cern.ch`-style tree:
//! `<root>/<registry>/<image>:<tag>/`). Resolution happens in a helper process run as the job's
//! user under a time limit, because an autofs CVMFS mount can hang the first lookup.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::args::{validate_image_name, ImageNameError};
use crate::helper::{run_bounded, HelperError, RunAs};

/// Why an image cannot be used. Every message names the image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image '{name}' is not a valid name: {source}")]
    BadName {
        name: String,
        source: ImageNameError,
    },
    #[error("image '{name}' was asked for but this cluster has no image_root configured")]
    NoImageRoot { name: String },
    #[error("image '{name}' does not exist under {}", root.display())]
    Missing { name: String, root: PathBuf },
    #[error("image '{name}' resolves outside {} (a symlink points out of the image root)", root.display())]
    Escapes { name: String, root: PathBuf },
    #[error("image '{name}' could not be checked: {source}")]
    Helper { name: String, source: HelperError },
}

/// Checks `name` and returns the image's path (as named under `root`, not resolved, so the
/// runner sees the same path an admin would).
pub fn check_image(
    name: &str,
    root: Option<&Path>,
    run_as: Option<RunAs>,
    limit: Duration,
) -> Result<PathBuf, ImageError> {
    validate_image_name(name).map_err(|source| ImageError::BadName {
        name: name.into(),
        source,
    })?;
    let root = root.ok_or_else(|| ImageError::NoImageRoot { name: name.into() })?;
    let image = root.join(name);
    // `<image>/.` only resolves if the image is a directory.
    let mut image_dot = image.clone().into_os_string();
    image_dot.push("/.");
    let output = run_bounded(
        Command::new("realpath")
            .args(["-e", "-z", "--"])
            .arg(root)
            .arg(&image_dot),
        &[("PATH", "/usr/bin:/bin")],
        run_as,
        limit,
    )
    .map_err(|source| ImageError::Helper {
        name: name.into(),
        source,
    })?;
    let mut resolved = output
        .stdout
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| PathBuf::from(OsStr::from_bytes(part)));
    let (Some(real_root), Some(real_image)) = (resolved.next(), resolved.next()) else {
        return Err(ImageError::Missing {
            name: name.into(),
            root: root.into(),
        });
    };
    if !output.status.success() {
        return Err(ImageError::Missing {
            name: name.into(),
            root: root.into(),
        });
    }
    if real_image == real_root || !real_image.starts_with(&real_root) {
        return Err(ImageError::Escapes {
            name: name.into(),
            root: root.into(),
        });
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> PathBuf {
        let base =
            std::env::temp_dir().join(format!("spank-gha-image-test-{}", std::process::id()));
        let root = base.join("unpacked.cern.ch");
        std::fs::create_dir_all(root.join("reg.example/gha/runner:1/bin")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(root.join("reg.example/file:1"), b"x").unwrap();
        let _ = symlink(base.join("outside"), root.join("reg.example/escape:1"));
        let _ = symlink("runner:1", root.join("reg.example/gha/alias:1"));
        root
    }

    #[test]
    fn checks_images_under_the_root() {
        let root = tree();
        let limit = Duration::from_secs(10);
        let ok = check_image("reg.example/gha/runner:1", Some(&root), None, limit).unwrap();
        assert_eq!(ok, root.join("reg.example/gha/runner:1"));
        check_image("reg.example/gha/alias:1", Some(&root), None, limit).unwrap();
        for (name, want) in [
            ("reg.example/missing:1", "does not exist"),
            ("reg.example/file:1", "does not exist"),
            ("reg.example/escape:1", "resolves outside"),
            ("../outside", "not a valid name"),
            ("/etc", "not a valid name"),
        ] {
            let err = check_image(name, Some(&root), None, limit).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(want), "{name}: {message}");
            assert!(message.contains(name), "{name}: {message}");
        }
        let err = check_image("reg.example/x:1", None, None, limit).unwrap_err();
        assert!(matches!(err, ImageError::NoImageRoot { .. }));
        let _ = std::fs::remove_dir_all(root.parent().unwrap());
    }
}
