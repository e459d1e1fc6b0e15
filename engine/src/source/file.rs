//! NDJSON batch files: one notice envelope per line, as agencies export
//! them. A bad line never stops the file: it becomes a rejection or a
//! dead letter like any other bad record. Lines longer than the payload
//! limit are not read into memory: the rest of the line is skipped and the
//! record is dead-lettered as `payload_too_large`.
//!
//! Re-running a file is safe: stored notices are absorbed as duplicates.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use karpoosheh_schemas::{AgencyId, Priority, SourcePosition};

use super::{AckToken, AckTracker, Poll, Record, Source, SourceError};

pub struct FileSource {
    path: PathBuf,
    display: String,
    reader: BufReader<File>,
    agency: Option<AgencyId>,
    max_line: usize,
    line_no: u64,
    next_seq: u64,
    eof: bool,
    acks: AckTracker,
}

impl FileSource {
    /// Opens `path`. `agency`: the agency the file is sent for, if known
    /// (every envelope must then name it). `max_line`: the payload limit.
    pub fn open(
        path: &Path,
        agency: Option<AgencyId>,
        max_line: usize,
    ) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|source| SourceError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut acks = AckTracker::default();
        acks.start_lane(0, 0);
        Ok(FileSource {
            path: path.to_owned(),
            display: path.display().to_string(),
            reader: BufReader::with_capacity(1 << 20, file),
            agency,
            max_line,
            line_no: 0,
            next_seq: 0,
            eof: false,
            acks,
        })
    }

    /// Records handed out so far.
    pub fn records_read(&self) -> u64 {
        self.next_seq
    }

    /// Records durably handled so far (contiguous from the first).
    pub fn records_done(&self) -> u64 {
        self.acks.watermark(0)
    }

    /// Reads one line into `buf` up to `max_line` bytes; returns the full
    /// length of the line (without the newline), or None at end of file.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
        buf.clear();
        let mut total: u64 = 0;
        let mut any = false;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(any.then_some(total));
            }
            any = true;
            let (part, found) = match memchr_newline(chunk) {
                Some(i) => (&chunk[..i], Some(i)),
                None => (chunk, None),
            };
            let room = self.max_line.saturating_sub(buf.len());
            buf.extend_from_slice(&part[..part.len().min(room + 1)]);
            total += part.len() as u64;
            let used = found.map_or(chunk.len(), |i| i + 1);
            self.reader.consume(used);
            if found.is_some() {
                if buf.last() == Some(&b'\r') && total as usize == buf.len() {
                    buf.pop();
                    total -= 1;
                }
                return Ok(Some(total));
            }
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

impl Source for FileSource {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn describe(&self) -> String {
        format!("NDJSON file {}", self.display)
    }

    fn poll(&mut self, max: usize, max_bytes: usize, _wait: Duration) -> Result<Poll, SourceError> {
        if self.eof {
            return Ok(Poll::Finished);
        }
        let mut out = Vec::with_capacity(max.min(4096));
        let mut buf = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max && (out.is_empty() || bytes < max_bytes) {
            let len = self.read_line(&mut buf).map_err(|source| SourceError::Io {
                path: self.path.display().to_string(),
                source,
            })?;
            let Some(len) = len else {
                self.eof = true;
                break;
            };
            self.line_no += 1;
            if len == 0 || (len as usize == buf.len() && buf.iter().all(u8::is_ascii_whitespace)) {
                continue; // blank lines carry no record
            }
            let oversize = (len as usize > self.max_line).then_some(len);
            if oversize.is_some() {
                buf.truncate(self.max_line);
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            bytes += buf.len();
            out.push(Record {
                token: AckToken {
                    lane: 0,
                    seq,
                    bytes: buf.len() as u32,
                },
                payload: std::mem::take(&mut buf),
                oversize,
                position: SourcePosition::File {
                    path: self.display.clone(),
                    line: self.line_no,
                },
                agency: self.agency.clone(),
                refused: None,
                received: Instant::now(),
                priority: Priority::Normal,
            });
        }
        if out.is_empty() {
            return Ok(if self.eof { Poll::Finished } else { Poll::Idle });
        }
        Ok(Poll::Records(out))
    }

    fn ack(&mut self, tokens: &[AckToken]) -> Result<(), SourceError> {
        self.acks.ack(tokens);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(content: &[u8], max_line: usize) -> Vec<Record> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        let mut s = FileSource::open(f.path(), None, max_line).unwrap();
        let mut out = Vec::new();
        loop {
            match s.poll(3, usize::MAX, Duration::ZERO).unwrap() {
                Poll::Records(r) => out.extend(r),
                Poll::Finished => return out,
                Poll::Idle => {}
            }
        }
    }

    #[test]
    fn lines_blank_lines_crlf_and_positions() {
        let recs = read_all(b"{\"a\":1}\r\n\n  \n{\"b\":2}\nlast-without-newline", 1024);
        let payloads: Vec<_> = recs
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).to_string())
            .collect();
        assert_eq!(payloads, ["{\"a\":1}", "{\"b\":2}", "last-without-newline"]);
        let lines: Vec<_> = recs
            .iter()
            .map(|r| match &r.position {
                SourcePosition::File { line, .. } => *line,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(lines, [1, 4, 5], "line numbers count blank lines");
        assert_eq!(
            recs.iter().map(|r| r.token.seq).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn a_poll_stops_at_its_byte_budget_but_always_yields_one_record() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for _ in 0..10 {
            f.write_all(&[b'x'; 99]).unwrap();
            f.write_all(b"\n").unwrap();
        }
        let mut s = FileSource::open(f.path(), None, 1024).unwrap();
        let sizes = |p: Poll| match p {
            Poll::Records(r) => r.iter().map(|r| r.token.bytes).collect::<Vec<_>>(),
            _ => panic!("no records"),
        };
        // 99 + 99 + 99 >= 250: three, each carrying its size for the ack.
        assert_eq!(
            sizes(s.poll(100, 250, Duration::ZERO).unwrap()),
            [99, 99, 99]
        );
        // A budget below one record still reads one: the pipeline never
        // stalls on a record larger than what is left.
        assert_eq!(sizes(s.poll(100, 1, Duration::ZERO).unwrap()), [99]);
        assert_eq!(
            sizes(s.poll(2, usize::MAX, Duration::ZERO).unwrap()).len(),
            2
        );
    }

    #[test]
    fn overlong_line_is_cut_not_buffered() {
        let mut content = vec![b'x'; 10_000];
        content.extend_from_slice(b"\n{\"ok\":1}\n");
        let recs = read_all(&content, 100);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].oversize, Some(10_000));
        assert!(recs[0].payload.len() <= 100);
        assert_eq!(recs[1].payload, b"{\"ok\":1}");
        assert_eq!(recs[1].oversize, None);
    }

    #[test]
    fn invalid_utf8_lines_are_records_too() {
        let recs = read_all(b"\xff\xfe\n{}\n", 1024);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].payload, b"\xff\xfe");
    }
}
