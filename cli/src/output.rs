//! Plain-text output: aligned tables, colours only on a terminal, durations an
//! operator types and reads (`90s`, `15m`, `2h`, `7d`).

use std::io::IsTerminal;
use std::time::Duration;

/// Whether to colour what goes to stdout: only on a terminal, and never when
/// `NO_COLOR` is set (<https://no-color.org>).
pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// A colour for a cell or a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paint {
    /// As is.
    Plain,
    /// Fine.
    Good,
    /// Needs a look.
    Warn,
    /// Broken.
    Bad,
}

impl Paint {
    /// `text` in this colour when `colour` is on.
    pub fn apply(self, text: &str, colour: bool) -> String {
        let code = match self {
            _ if !colour => return text.to_owned(),
            Self::Plain => return text.to_owned(),
            Self::Good => "32",
            Self::Warn => "33",
            Self::Bad => "31",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// A table of text cells, printed with columns padded to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<(String, Paint)>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of plain cells.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| (c, Paint::Plain)).collect());
    }

    /// Adds a row whose cells have their own colours.
    pub fn painted_row(&mut self, cells: Vec<(String, Paint)>) {
        self.rows.push(cells);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines (colour codes do not count towards widths).
    pub fn render(&self, colour: bool) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, (cell, _)) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<(String, Paint)>, out: &mut String| {
            let last = cells.len().saturating_sub(1);
            for (i, (cell, paint)) in cells.into_iter().enumerate() {
                let pad = widths.get(i).copied().unwrap_or(0)
                    - cell
                        .chars()
                        .count()
                        .min(widths.get(i).copied().unwrap_or(0));
                out.push_str(&paint.apply(&cell, colour));
                if i != last {
                    out.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push('\n');
        };
        line(
            self.header
                .iter()
                .map(|h| (h.clone(), Paint::Plain))
                .collect(),
            &mut out,
        );
        for row in &self.rows {
            line(row.clone(), &mut out);
        }
        out
    }
}

/// Parses `90s`, `15m`, `2h`, `7d` (or a bare number of seconds).
///
/// # Errors
///
/// A message naming the value, for clap to print.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 90s, 15m, 2h, 7d)"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

/// A duration in the largest unit that keeps it readable: `45s`, `12m`, `3h`, `2d`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7_199 => format!("{}m", s / 60),
        7_200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A byte count in binary units: `512 B`, `3.2 KiB`, `1.0 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_secs(3 * 86_400)), "3d");
        assert_eq!(human_bytes(1_048_576), "1.0 MiB");
    }

    #[test]
    fn tables_align_and_colour_only_when_asked() {
        let mut table = Table::new(&["A", "LONG"]);
        table.painted_row(vec![("xyz".into(), Paint::Bad), ("1".into(), Paint::Plain)]);
        assert_eq!(table.render(false), "A    LONG\nxyz  1\n");
        assert!(table.render(true).contains("\x1b[31mxyz\x1b[0m  1"));
    }
}
