//! Plain-text tables for the reports dotstub prints (`padding eval`,
//! `padding probe`): each column as wide as its widest cell, two spaces
//! between columns, the leading name columns left-aligned and the numbers
//! right-aligned, no trailing spaces.

use std::fmt::Write as _;

/// `rows` (the heading first) as lines, each ending in a newline; the
/// first `names` columns are left-aligned, the rest right-aligned.
pub fn aligned<Row: AsRef<[String]>>(rows: &[Row], names: usize) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (column, cell) in row.as_ref().iter().enumerate() {
            match widths.get_mut(column) {
                Some(width) => *width = (*width).max(cell.len()),
                None => widths.push(cell.len()),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, (cell, width)) in row.as_ref().iter().zip(&widths).enumerate() {
            let gap = if column == 0 { "" } else { "  " };
            let _ = if column < names {
                write!(line, "{gap}{cell:<width$}")
            } else {
                write!(line, "{gap}{cell:>width$}")
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell_names_left_numbers_right() {
        let rows = [
            ["policy", "upstream", "beta"].map(String::from),
            ["block:128", "quad9", "1.5"].map(String::from),
            ["none", "a", "12.25"].map(String::from),
        ];
        assert_eq!(
            aligned(&rows, 2),
            "policy     upstream   beta\n\
             block:128  quad9       1.5\n\
             none       a         12.25\n"
        );
    }
}
