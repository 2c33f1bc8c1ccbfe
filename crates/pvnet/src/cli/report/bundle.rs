//! The bundle: parts collected (or not, and why), an index, and the `.tar.gz` that holds
//! them under one top directory.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Name of the index, the first file of the bundle.
pub const INDEX: &str = "README.txt";

/// One part of the report: a file, or the reason it could not be made.
#[derive(Debug)]
pub struct Part {
    /// Path inside the top directory, e.g. `system/uname.txt`.
    pub path: String,
    /// What it holds, for the index.
    pub what: String,
    /// The contents, or why there are none.
    pub contents: Result<Vec<u8>, String>,
}

/// The parts gathered so far.
#[derive(Debug, Default)]
pub struct Bundle {
    parts: Vec<Part>,
}

impl Bundle {
    /// Add a part.
    pub fn add(
        &mut self,
        path: impl Into<String>,
        what: impl Into<String>,
        contents: Result<Vec<u8>, String>,
    ) {
        self.parts.push(Part {
            path: path.into(),
            what: what.into(),
            contents,
        });
    }

    /// Add a text part.
    pub fn text(
        &mut self,
        path: impl Into<String>,
        what: impl Into<String>,
        contents: Result<String, String>,
    ) {
        self.add(path, what, contents.map(String::into_bytes));
    }

    /// Move `other`'s parts after this bundle's.
    pub fn append(&mut self, other: Bundle) {
        self.parts.extend(other.parts);
    }

    /// Every part, in the order added.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The parts not collected, with their reasons, grouped by reason (in order of first
    /// appearance): `(reason, paths)`.
    pub fn skipped(&self) -> Vec<(&str, Vec<&str>)> {
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for p in &self.parts {
            if let Err(why) = &p.contents {
                match groups.iter_mut().find(|(w, _)| w == why) {
                    Some((_, paths)) => paths.push(&p.path),
                    None => groups.push((why, vec![&p.path])),
                }
            }
        }
        groups
    }

    /// The index: a header the caller wrote (who, when, where), the parts collected, the
    /// parts not collected with the reason of each, then `footer`.
    pub fn index(&self, header: &str, footer: &str) -> String {
        let width = self.parts.iter().map(|p| p.path.len()).max().unwrap_or(0) + 2;
        let collected: Vec<&Part> = self.parts.iter().filter(|p| p.contents.is_ok()).collect();
        let missing: Vec<&Part> = self.parts.iter().filter(|p| p.contents.is_err()).collect();
        let mut s = String::from(header);
        let _ = writeln!(s, "\nCollected ({}):", collected.len());
        for p in &collected {
            let _ = writeln!(s, "  {:<width$}{}", p.path, p.what);
        }
        if collected.is_empty() {
            s.push_str("  nothing\n");
        }
        let _ = writeln!(s, "\nNot collected ({}), and why:", missing.len());
        for p in &missing {
            let _ = writeln!(s, "  {:<width$}{}", p.path, p.what);
            if let Err(why) = &p.contents {
                let _ = writeln!(s, "      why: {why}");
            }
        }
        if missing.is_empty() {
            s.push_str("  nothing: every part is here\n");
        }
        s.push('\n');
        s.push_str(footer);
        s
    }

    /// Write `index` then every collected part, under `top/`, as a gzip-compressed tar
    /// file at `out`. The file appears whole or not at all: it is written beside `out`
    /// under a temporary name and renamed at the end.
    pub fn write(&self, out: &Path, top: &str, index: &str, mtime: u64) -> Result<(), String> {
        let name = out
            .file_name()
            .ok_or_else(|| format!("{}: not a file name", out.display()))?;
        let tmp = out.with_file_name(format!(
            ".{}.{}.partial",
            name.to_string_lossy(),
            std::process::id()
        ));
        let result = self
            .write_to(&tmp, top, index, mtime)
            .and_then(|()| fs::rename(&tmp, out));
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("cannot write {}: {e}", out.display())
        })
    }

    fn write_to(&self, path: &Path, top: &str, index: &str, mtime: u64) -> io::Result<()> {
        let file = File::create(path)?;
        let gz = GzEncoder::new(BufWriter::new(file), Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut entry = |path: &str, data: &[u8]| -> io::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            tar.append_data(&mut h, format!("{top}/{path}"), data)
        };
        entry(INDEX, index.as_bytes())?;
        for p in &self.parts {
            if let Ok(data) = &p.contents {
                entry(&p.path, data)?;
            }
        }
        let gz = tar.into_inner()?;
        let mut file = gz.finish()?;
        file.flush()?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_lists_every_part_and_why_a_part_is_missing() {
        let mut b = Bundle::default();
        b.text("a.txt", "the first", Ok("x".into()));
        b.text("switch/b.json", "the second", Err("no switch".into()));
        b.text("switch/c.json", "the third", Err("no switch".into()));
        b.text("d.txt", "the fourth", Err("not installed".into()));
        let idx = b.index("HEAD\n", "FOOT\n");
        assert!(idx.starts_with("HEAD\n"), "{idx}");
        assert!(idx.ends_with("FOOT\n"), "{idx}");
        assert!(
            idx.contains("Collected (1):\n  a.txt          the first\n"),
            "{idx}"
        );
        assert!(
            idx.contains("  switch/b.json  the second\n      why: no switch\n"),
            "{idx}"
        );
        assert!(idx.contains("Not collected (3), and why:"), "{idx}");
        assert_eq!(
            b.skipped(),
            vec![
                ("no switch", vec!["switch/b.json", "switch/c.json"]),
                ("not installed", vec!["d.txt"])
            ]
        );
    }
}
