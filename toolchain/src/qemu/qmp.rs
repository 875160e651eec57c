//! QEMU's machine protocol (QMP). The runner presses the virtual power button with it
//! (`system_powerdown`, how it asks the guest to stop gracefully: the kernel turns it into
//! SIGTERM for the program), and the kernel profiler ([`super::kprof`]) stops the guest,
//! reads its registers and memory and continues it, through HMP commands carried by QMP.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The `-qmp` arguments for a socket at `path` that QEMU serves without waiting for us.
/// QEMU serves one client per socket, so each user of QMP gets a socket of its own.
pub fn args(path: &Path) -> [String; 2] {
    [
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", super::args::qemu_escape(path)),
    ]
}

/// A QMP connection in command mode (after `qmp_capabilities`).
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    line: String,
}

/// The answer to one command: its `return` value, or QEMU's error description.
pub type Answer = Result<serde_json::Value, String>;

impl Client {
    /// Connects to the QMP socket at `path`, reads the greeting and leaves negotiation
    /// mode. Reads and writes give up after `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> std::io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        Client::over(stream, timeout)
    }

    /// [`Client::connect`] over an already connected stream.
    pub fn over(stream: UnixStream, timeout: Duration) -> std::io::Result<Client> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut c = Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            line: String::new(),
        };
        // The greeting, then capabilities negotiation.
        c.read_message()?;
        c.execute("qmp_capabilities", None)?
            .map_err(std::io::Error::other)?;
        Ok(c)
    }

    /// The stream under the client (to shut it down from another thread).
    pub fn stream(&self) -> &UnixStream {
        &self.writer
    }

    /// One JSON message from QEMU.
    fn read_message(&mut self) -> std::io::Result<serde_json::Value> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        serde_json::from_str(&self.line).map_err(|e| {
            std::io::Error::other(format!("QMP sent something that is not JSON ({e})"))
        })
    }

    /// Runs `command` (with `arguments`) and returns its answer.
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> std::io::Result<Answer> {
        let mut msg = serde_json::json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        Ok(self.batch(&[msg])?.remove(0))
    }

    /// Sends all of `messages` at once and reads their answers, in order (QEMU runs the
    /// commands of one connection in order), skipping the events that come between. One
    /// round trip instead of one per command.
    pub fn batch(&mut self, messages: &[serde_json::Value]) -> std::io::Result<Vec<Answer>> {
        let mut out = Vec::with_capacity(messages.len());
        let mut text = String::new();
        for m in messages {
            text.push_str(&m.to_string());
            text.push('\n');
        }
        self.writer.write_all(text.as_bytes())?;
        while out.len() < messages.len() {
            let mut msg = self.read_message()?;
            if let Some(r) = msg.get_mut("return") {
                out.push(Ok(r.take()));
            } else if let Some(e) = msg.get("error") {
                out.push(Err(e
                    .get("desc")
                    .and_then(|d| d.as_str())
                    .unwrap_or("error")
                    .to_string()));
            }
            // Anything else is an event (STOP, RESUME, ...).
        }
        Ok(out)
    }

    /// Runs the HMP (human monitor) commands `commands` in one round trip and returns
    /// their output text.
    pub fn hmp(&mut self, commands: &[&str]) -> std::io::Result<Vec<Result<String, String>>> {
        let messages: Vec<serde_json::Value> = commands
            .iter()
            .map(|c| {
                serde_json::json!({
                    "execute": "human-monitor-command",
                    "arguments": { "command-line": c },
                })
            })
            .collect();
        Ok(self
            .batch(&messages)?
            .into_iter()
            .map(|a| a.map(|v| v.as_str().unwrap_or_default().to_string()))
            .collect())
    }
}

/// Presses the power button of the QEMU serving QMP at `path`.
pub fn system_powerdown(path: &Path) -> std::io::Result<()> {
    let mut c = Client::connect(path, Duration::from_secs(2))?;
    c.execute("system_powerdown", None)?
        .map_err(std::io::Error::other)?;
    Ok(())
}
