//! SQLite's disk fails under write load: the filesystem fills up (a 48 MiB tmpfs) and space is
//! freed again, or it turns read-only (ext4 on a loop device, told to fail the way it does on an
//! I/O error with `errors=remount-ro`) and is repaired (unmounted, checked, mounted again) while
//! the server runs. Mounting needs root; without it the tests say so, and fail under CI=true.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use etcdshim::ServerOptions;

use super::WriteLoad;
use crate::harness::TestServer;

/// A filesystem mounted for one test, unmounted when dropped.
struct Mounted {
    point: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mounted {
    /// Mounts with `mount ARGS... POINT`, or says why not (fatal under CI=true).
    fn new(dir: tempfile::TempDir, args: &[&str]) -> Option<Mounted> {
        let point = dir.path().join("mnt");
        std::fs::create_dir(&point).expect("mount point");
        let mounted = Command::new("mount")
            .args(args)
            .arg(&point)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "mount {args:?} failed: the disk fault tests need root; CI requires them"
            );
            eprintln!("SKIPPED: mount {args:?} failed (the disk fault tests need root)");
            return None;
        }
        Some(Mounted { point, _dir: dir })
    }

    fn sqlite_endpoint(&self) -> String {
        format!("sqlite://{}", self.point.join("state.db").display())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
    }
}

fn server_options(mounted: &Mounted) -> ServerOptions {
    ServerOptions {
        endpoint: mounted.sqlite_endpoint(),
        ..ServerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_filesystem() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(disk) = Mounted::new(dir, &["-t", "tmpfs", "-o", "size=48m", "tmpfs"]) else {
        return;
    };
    // Room to give back once the disk is full.
    let ballast = disk.point.join("ballast");
    std::fs::write(&ballast, vec![1u8; 6 << 20]).expect("ballast");
    let server = TestServer::start_on(server_options(&disk)).await;
    let client = server.client().await;
    let load = WriteLoad::start(&client, 2, 100_000, Duration::ZERO);
    load.wait_for_failed(3, Duration::from_secs(120), "the disk filled up")
        .await;
    let head = crate::harness::head_revision(&client).await;
    assert!(head > 1, "reads go on while the disk is full");
    std::fs::remove_file(&ballast).expect("free space");
    load.wait_for_acknowledged(
        5,
        Duration::from_secs(30),
        "writes never resumed after space was freed",
    )
    .await;
    load.finish_and_check(&client, "full filesystem").await;
}

/// The loop device behind `point`.
fn loop_device(point: &Path) -> String {
    let output = Command::new("findmnt")
        .args(["-n", "-o", "SOURCE"])
        .arg(point)
        .output()
        .expect("findmnt");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_filesystem_that_turns_read_only() {
    let dir = tempfile::tempdir().expect("dir");
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image)
        .and_then(|file| file.set_len(64 << 20))
        .expect("image");
    let formatted = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&image)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(formatted, "mkfs.ext4 (e2fsprogs) formats the image");
    let image_arg = image.display().to_string();
    let Some(disk) = Mounted::new(
        tempfile::tempdir().expect("dir"),
        &["-o", "loop,errors=remount-ro", &image_arg],
    ) else {
        return;
    };
    let server = TestServer::start_on(server_options(&disk)).await;
    let client = server.client().await;
    let load = WriteLoad::start(&client, 4, 1000, Duration::from_millis(5));
    load.wait_for_acknowledged(50, Duration::from_secs(30), "writes before the fault")
        .await;
    // What ext4 does on an I/O error: abort the journal, remount read-only.
    let device = loop_device(&disk.point);
    let name = device.trim_start_matches("/dev/");
    let fault = std::time::Instant::now();
    std::fs::write(format!("/sys/fs/ext4/{name}/trigger_fs_error"), "1")
        .expect("trigger an ext4 error");
    load.wait_for_failed(
        3,
        Duration::from_secs(30),
        "writes failed on the read-only disk",
    )
    .await;
    let head = crate::harness::head_revision(&client).await;
    assert!(head > 1, "reads go on while the disk is read-only");
    // The operator's repair: unmount (lazily: etcdshim still holds the old files), check the
    // filesystem, mount it again at the same place. The check runs on a copy of the volume,
    // since mount would hand the image's loop device, still held by the old mount, back.
    run(Command::new("umount").arg("-l").arg(&disk.point));
    let repaired = dir.path().join("repaired.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&image)
        .arg(&repaired));
    let checked = Command::new("e2fsck")
        .arg("-fy")
        .arg(&repaired)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("e2fsck");
    // 0: clean, 1: errors corrected.
    assert!(
        matches!(checked.code(), Some(0 | 1)),
        "e2fsck repaired the image: {checked}"
    );
    run(Command::new("mount")
        .args(["-o", "loop,errors=remount-ro"])
        .arg(&repaired)
        .arg(&disk.point));
    load.wait_for_acknowledged(
        20,
        Duration::from_secs(60),
        "writes never resumed after the filesystem was repaired",
    )
    .await;
    // Every acknowledged write, before the fault and after the repair, is there whole: the
    // reads come from connections on the repaired mount, not the old one. Except what the
    // kernel itself loses: an append whose fdatasync returned success in the instant the
    // journal was aborted can be missing after the repair (Linux 6.18, ext4; shown with a
    // plain file and no SQLite by scripts/ext4-abort-durability.py), so the writes
    // acknowledged between the fault and the first failure are reported, not required.
    load.finish_and_check_after(&client, "read-only filesystem", Some(fault))
        .await;
}

fn run(command: &mut Command) {
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert!(status.success(), "{command:?}: {status}");
}
