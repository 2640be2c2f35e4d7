//! `rackwatch-uf2 IN.elf... OUT.uf2`: the loadable segments of 32-bit little-endian ARM ELF files (the
//! bootloader and the application: one file flashes both) as a UF2 file for the RP2040's boot ROM, which shows up as a USB drive (RPI-RP2) while BOOTSEL is held at
//! power-up and flashes whatever UF2 file is copied onto it.
//!
//! Why our own: the format is small and public (Microsoft's UF2 specification,
//! github.com/microsoft/uf2, "File format"), and writing it here keeps the build to the Rust
//! toolchain alone: no C tool (picotool) and no crate that pulls in serial-port and udev libraries
//! to convert a file.
//!
//! Each 512-byte block carries 256 bytes of flash at a 256-byte aligned address (the RP2040 boot
//! ROM takes nothing else: RP2040 datasheet 2.8.4.2, "UF2 Format Details") and the RP2040's family ID.

use std::process::ExitCode;

/// UF2 block magic numbers (UF2 specification, "File format").
const MAGIC_START0: u32 = 0x0A32_4655;
const MAGIC_START1: u32 = 0x9E5D_5157;
const MAGIC_END: u32 = 0x0AB1_6F30;
/// flags: the family ID field is present.
const FLAG_FAMILY_ID_PRESENT: u32 = 0x0000_2000;
/// RP2040's family ID (UF2 specification, "Family IDs"; RP2040 datasheet 2.8.4.2).
const FAMILY_RP2040: u32 = 0xE48B_FF56;
const BLOCK: usize = 512;
const PAYLOAD: usize = 256;
/// The RP2040's flash through XIP: the only place the boot ROM writes.
const FLASH: core::ops::Range<u32> = 0x1000_0000..0x1100_0000;

/// Why a file could not be converted.
#[derive(Debug, PartialEq, Eq)]
enum Uf2Error {
    NotElf32Arm,
    Truncated,
    SegmentOutsideFlash(u32),
    NothingToLoad,
    /// Two segments (of one file or of two) would write the same flash.
    Overlap(u32),
}

impl std::fmt::Display for Uf2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uf2Error::NotElf32Arm => f.write_str("not a 32-bit little-endian ARM ELF file"),
            Uf2Error::Truncated => f.write_str("the ELF file ends inside a header or segment"),
            Uf2Error::SegmentOutsideFlash(address) => {
                write!(
                    f,
                    "a loadable segment at {address:#010x} is outside the RP2040's flash"
                )
            }
            Uf2Error::NothingToLoad => f.write_str("the ELF file has no loadable bytes"),
            Uf2Error::Overlap(address) => {
                write!(f, "two loadable segments overlap at {address:#010x}")
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, elves @ .., uf2] = args.as_slice() else {
        return usage();
    };
    if elves.is_empty() {
        return usage();
    }
    let files: Result<Vec<Vec<u8>>, String> = elves
        .iter()
        .map(|elf| std::fs::read(elf).map_err(|e| format!("cannot read {elf}: {e}")))
        .collect();
    let converted = files
        .and_then(|files| {
            let files: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
            to_uf2(&files).map_err(|e| format!("{}: {e}", elves.join(" + ")))
        })
        .and_then(|blocks| {
            std::fs::write(uf2, &blocks)
                .map(|()| blocks.len() / BLOCK)
                .map_err(|e| format!("cannot write {uf2}: {e}"))
        });
    match converted {
        Ok(blocks) => {
            println!("{uf2}: {blocks} blocks, {} KiB of flash", blocks * PAYLOAD / 1024);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("rackwatch-uf2: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: rackwatch-uf2 IN.elf... OUT.uf2");
    ExitCode::from(2)
}

/// The UF2 file of the loadable segments of `elves`, placed at their load (physical) addresses.
fn to_uf2(elves: &[&[u8]]) -> Result<Vec<u8>, Uf2Error> {
    let mut image = Vec::new();
    for elf in elves {
        image.extend(flash_image(elf)?);
    }
    image.sort_by_key(|&(address, _)| address);
    for pair in image.windows(2) {
        if let [(first, bytes), (second, _)] = pair
            && first + bytes.len() as u32 > *second
        {
            return Err(Uf2Error::Overlap(*second));
        }
    }
    let pages: Vec<(u32, [u8; PAYLOAD])> = pages(&image);
    let count = u32::try_from(pages.len()).map_err(|_| Uf2Error::Truncated)?;
    let mut out = Vec::with_capacity(pages.len() * BLOCK);
    for (number, (address, data)) in (0u32..).zip(&pages) {
        let start = out.len();
        for word in [
            MAGIC_START0,
            MAGIC_START1,
            FLAG_FAMILY_ID_PRESENT,
            *address,
            PAYLOAD as u32,
            number,
            count,
            FAMILY_RP2040,
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(data);
        out.resize(start + BLOCK - 4, 0);
        out.extend_from_slice(&MAGIC_END.to_le_bytes());
    }
    Ok(out)
}

/// Each loadable segment's bytes and load address.
fn flash_image(elf: &[u8]) -> Result<Vec<(u32, &[u8])>, Uf2Error> {
    // ELF header (System V ABI, "ELF Header"): class 1 (32-bit), data 1 (little-endian), machine 40 (ARM).
    if elf.get(..4) != Some(b"\x7fELF")
        || elf.get(4) != Some(&1)
        || elf.get(5) != Some(&1)
        || u16_at(elf, 18)? != 40
    {
        return Err(Uf2Error::NotElf32Arm);
    }
    let (table, entry_size, entries) = (
        u32_at(elf, 28)? as usize,
        usize::from(u16_at(elf, 42)?),
        u16_at(elf, 44)?,
    );
    let mut segments = Vec::new();
    for index in 0..usize::from(entries) {
        let header = table + index * entry_size;
        // Program header: type, offset, vaddr, paddr, filesz (PT_LOAD = 1).
        let (kind, offset, paddr, size) = (
            u32_at(elf, header)?,
            u32_at(elf, header + 4)? as usize,
            u32_at(elf, header + 12)?,
            u32_at(elf, header + 16)? as usize,
        );
        if kind != 1 || size == 0 {
            continue;
        }
        let end = paddr
            .checked_add(size as u32)
            .ok_or(Uf2Error::SegmentOutsideFlash(paddr))?;
        if !FLASH.contains(&paddr) || end > FLASH.end {
            return Err(Uf2Error::SegmentOutsideFlash(paddr));
        }
        segments.push((paddr, elf.get(offset..offset + size).ok_or(Uf2Error::Truncated)?));
    }
    if segments.is_empty() {
        return Err(Uf2Error::NothingToLoad);
    }
    Ok(segments)
}

/// The segments cut into 256-byte pages at 256-byte aligned addresses, in address order; bytes of a
/// page that no segment covers are 0.
fn pages(segments: &[(u32, &[u8])]) -> Vec<(u32, [u8; PAYLOAD])> {
    let mut pages: std::collections::BTreeMap<u32, [u8; PAYLOAD]> = std::collections::BTreeMap::new();
    for &(address, bytes) in segments {
        for (at, &byte) in (address..).zip(bytes) {
            let page = pages.entry(at & !(PAYLOAD as u32 - 1)).or_insert([0; PAYLOAD]);
            if let Some(cell) = page.get_mut((at as usize) % PAYLOAD) {
                *cell = byte;
            }
        }
    }
    pages.into_iter().collect()
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, Uf2Error> {
    let field = bytes.get(at..at + 2).ok_or(Uf2Error::Truncated)?;
    Ok(u16::from_le_bytes(
        field.try_into().map_err(|_| Uf2Error::Truncated)?,
    ))
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, Uf2Error> {
    let field = bytes.get(at..at + 4).ok_or(Uf2Error::Truncated)?;
    Ok(u32::from_le_bytes(
        field.try_into().map_err(|_| Uf2Error::Truncated)?,
    ))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]
mod tests {
    use super::*;

    /// A minimal ELF: one PT_LOAD segment of `data` at `paddr`.
    fn elf(paddr: u32, data: &[u8]) -> Vec<u8> {
        let mut elf = vec![0u8; 52 + 32];
        elf[..6].copy_from_slice(b"\x7fELF\x01\x01");
        elf[18..20].copy_from_slice(&40u16.to_le_bytes());
        elf[28..32].copy_from_slice(&52u32.to_le_bytes());
        elf[42..44].copy_from_slice(&32u16.to_le_bytes());
        elf[44..46].copy_from_slice(&1u16.to_le_bytes());
        let header = [1u32, 84, paddr, paddr, data.len() as u32];
        for (i, word) in header.iter().enumerate() {
            elf[52 + i * 4..56 + i * 4].copy_from_slice(&word.to_le_bytes());
        }
        elf.extend_from_slice(data);
        elf
    }

    fn word(block: &[u8], index: usize) -> u32 {
        u32::from_le_bytes(block[index * 4..index * 4 + 4].try_into().unwrap())
    }

    #[test]
    fn a_segment_becomes_aligned_256_byte_blocks_for_the_rp2040() {
        // 300 bytes from 0x1000_0080: pages 0x1000_0000 (bytes 0x80..) and 0x1000_0100.
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let uf2 = to_uf2(&[&elf(0x1000_0080, &data)]).unwrap();
        assert_eq!(uf2.len(), 2 * BLOCK);
        let (first, second) = uf2.split_at(BLOCK);
        for (block, number, address) in [(first, 0, 0x1000_0000), (second, 1, 0x1000_0100)] {
            assert_eq!(
                [word(block, 0), word(block, 1), word(block, 2), word(block, 3)],
                [MAGIC_START0, MAGIC_START1, FLAG_FAMILY_ID_PRESENT, address]
            );
            assert_eq!(
                [word(block, 4), word(block, 5), word(block, 6), word(block, 7)],
                [256, number, 2, FAMILY_RP2040]
            );
            assert_eq!(word(block, 127), MAGIC_END);
        }
        assert_eq!(&first[32..32 + 0x80], &[0u8; 0x80][..]);
        assert_eq!(&first[32 + 0x80..32 + 256], &data[..128]);
        assert_eq!(&second[32..32 + 172], &data[128..]);
    }

    #[test]
    fn a_segment_outside_flash_is_refused() {
        assert_eq!(
            to_uf2(&[&elf(0x2000_0000, b"ram")]),
            Err(Uf2Error::SegmentOutsideFlash(0x2000_0000))
        );
        assert_eq!(to_uf2(&[b"not an elf"]), Err(Uf2Error::NotElf32Arm));
    }

    #[test]
    fn a_bootloader_and_an_application_make_one_file_and_may_not_overlap() {
        // The bootloader at the start of flash, the application at ACTIVE (0x1000_8000).
        let (loader, app) = (elf(0x1000_0000, &[1; 300]), elf(0x1000_8000, &[2; 10]));
        let uf2 = to_uf2(&[&loader, &app]).unwrap();
        let blocks: Vec<&[u8]> = uf2.chunks(BLOCK).collect();
        assert_eq!(blocks.len(), 3);
        let addresses: Vec<u32> = blocks.iter().map(|block| word(block, 3)).collect();
        assert_eq!(addresses, [0x1000_0000, 0x1000_0100, 0x1000_8000]);
        for (number, block) in blocks.iter().enumerate() {
            assert_eq!([word(block, 5), word(block, 6)], [number as u32, 3]);
        }
        assert_eq!(&blocks[2][32..42], &[2; 10]);
        assert_eq!(
            to_uf2(&[&loader, &elf(0x1000_0100, &[3])]),
            Err(Uf2Error::Overlap(0x1000_0100))
        );
    }
}
