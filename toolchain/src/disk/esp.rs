//! The raw GPT disk: protective MBR, GPT (the `gpt` crate) and one FAT32 EFI System
//! Partition (the `fatfs` crate) holding `\EFI\BOOT\BOOTX64.EFI` and `\KILN\CMDLINE`.

use super::derive_id;
use anyhow::{anyhow, Context};
use std::collections::BTreeMap;
use std::io::{Cursor, Seek, SeekFrom, Write};
use std::path::Path;

const MIB: u64 = 1 << 20;
/// Sector size of every disk Kiln writes.
pub const SECTOR: u64 = 512;
/// The ESP starts at 1 MiB (LBA 2048), the usual alignment.
pub const ESP_START: u64 = MIB;
/// Smallest ESP: FAT32 needs 65,525 clusters; 40 MiB of 512-byte clusters has ~81,000.
pub const MIN_ESP: u64 = 40 * MIB;

/// The template of `\KILN\CMDLINE`: comments only, so the image's baked-in configuration
/// applies until someone adds tokens.
pub const CMDLINE_TEMPLATE: &str = "\
# Kiln run-time command line, read by Kiln's EFI stub at every boot.
# Tokens added here override the configuration baked into the image, for example:
#   kiln.argv=--port,8080 kiln.env=RUST_LOG=info
# (arguments are comma-separated and percent-encoded: %2C for a comma, %20 for a space).
# QEMU's fw_cfg file opt/kiln/cmdline, which `cargo xtask run` sets, is read after this
# file and overrides it. Lines starting with # are ignored; line breaks separate tokens.
";

/// FAT time stamps: always 1980-01-01 00:00:00, for reproducible bytes.
#[derive(Debug)]
struct FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

/// Size of the ESP for an EFI application of `efi_len` bytes.
pub fn esp_size(efi_len: u64) -> u64 {
    let want = efi_len + efi_len / 8 + 8 * MIB;
    want.div_ceil(MIB).saturating_mul(MIB).max(MIN_ESP)
}

/// The ESP's bytes: FAT32 with 512-byte clusters.
pub fn make_esp(efi: &[u8], size: u64) -> anyhow::Result<Vec<u8>> {
    let mut vol = Cursor::new(vec![0u8; size as usize]);
    let id = derive_id(efi, "fat-volume-id");
    fatfs::format_volume(
        &mut vol,
        fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_cluster(512)
            .volume_id(u32::from_le_bytes(id[..4].try_into().expect("4 bytes")))
            .volume_label(*b"KILN-ESP   "),
    )
    .context("formatting the EFI System Partition (FAT32)")?;
    vol.seek(SeekFrom::Start(0))?;
    {
        let fs = fatfs::FileSystem::new(
            &mut vol,
            fatfs::FsOptions::new()
                .time_provider(&FIXED_TIME)
                .update_accessed_date(false),
        )
        .context("opening the new EFI System Partition")?;
        {
            let root = fs.root_dir();
            let boot = root.create_dir("EFI")?.create_dir("BOOT")?;
            boot.create_file("BOOTX64.EFI")?.write_all(efi)?;
            root.create_dir("KILN")?
                .create_file("CMDLINE")?
                .write_all(CMDLINE_TEMPLATE.as_bytes())?;
        }
        fs.unmount().context("closing the EFI System Partition")?;
    }
    Ok(vol.into_inner())
}

/// Writes a raw GPT disk with the ESP to `out`: at least `min_size` bytes (rounded up to a
/// whole multiple of it when given, else to 1 MiB), with 1 MiB after the ESP for the backup
/// GPT. The file is sparse where the disk is zero.
pub fn write_raw_disk(efi: &[u8], round_to: Option<u64>, out: &Path) -> anyhow::Result<()> {
    let esp_len = esp_size(efi.len() as u64);
    let esp = make_esp(efi, esp_len)?;
    let unit = round_to.unwrap_or(MIB);
    let size = (ESP_START + esp_len + MIB).div_ceil(unit) * unit;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .with_context(|| format!("could not create {}", out.display()))?;
    file.set_len(size)?;
    file.seek(SeekFrom::Start(ESP_START))?;
    file.write_all(&esp)?;

    let sectors = size / SECTOR;
    let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(u32::try_from(sectors - 1).unwrap_or(u32::MAX));
    mbr.overwrite_lba0(&mut file)
        .map_err(|e| anyhow!("writing the protective MBR: {e}"))?;
    let disk_guid = uuid::Builder::from_random_bytes(derive_id(efi, "gpt-disk")).into_uuid();
    let part_guid = uuid::Builder::from_random_bytes(derive_id(efi, "gpt-esp")).into_uuid();
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(file, Some(disk_guid))
        .map_err(|e| anyhow!("creating the GPT: {e}"))?;
    let first = ESP_START / SECTOR;
    let mut parts = BTreeMap::new();
    parts.insert(
        1,
        gpt::partition::Partition {
            part_type_guid: gpt::partition_types::EFI,
            part_guid,
            first_lba: first,
            last_lba: first + esp_len / SECTOR - 1,
            flags: 0,
            name: "EFI System Partition".into(),
        },
    );
    disk.update_partitions(parts)
        .map_err(|e| anyhow!("adding the EFI System Partition to the GPT: {e}"))?;
    let mut file = disk.write().map_err(|e| anyhow!("writing the GPT: {e}"))?;
    file.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_holds_the_application_and_is_fat32() {
        let efi = b"MZ fake application".repeat(100);
        let esp = make_esp(&efi, esp_size(efi.len() as u64)).unwrap();
        assert_eq!(esp.len() as u64, MIN_ESP);
        assert_eq!(esp, make_esp(&efi, MIN_ESP).unwrap());
        let fs = fatfs::FileSystem::new(Cursor::new(esp), fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
        let mut f = fs.root_dir().open_file("EFI/BOOT/BOOTX64.EFI").unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut back).unwrap();
        assert_eq!(back, efi);
    }

    #[test]
    fn raw_disk_has_gpt_and_esp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.raw");
        write_raw_disk(b"MZ app", None, &p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len() as u64, MIN_ESP + 2 * MIB);
        assert_eq!(&bytes[510..512], b"\x55\xaa");
        assert_eq!(&bytes[512..520], b"EFI PART");
        assert_eq!(&bytes[bytes.len() - 512..][..8], b"EFI PART");
        let disk = gpt::GptConfig::new()
            .open_from_device(Cursor::new(bytes.clone()))
            .unwrap();
        let p1 = &disk.partitions()[&1];
        assert_eq!(p1.part_type_guid, gpt::partition_types::EFI);
        assert_eq!(p1.first_lba, 2048);
        let p2 = dir.path().join("e.raw");
        write_raw_disk(b"MZ app", None, &p2).unwrap();
        assert_eq!(std::fs::read(&p2).unwrap(), bytes);
    }
}
