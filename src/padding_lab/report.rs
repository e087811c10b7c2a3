//! The evaluator's printed output: an aligned table for people, JSON for
//! scripts.
//!
//! The JSON is written by hand: its keys and values are fixed (policy
//! strings hold only `[a-z0-9:/-]`), so a JSON crate would only add size.

use std::fmt::Write;

use super::Evaluation;

/// Column headings, in order; the JSON keys are the same words.
const COLUMNS: [&str; 9] = [
    "policy",
    "n",
    "beta",
    "beta_q",
    "beta_r",
    "phi",
    "distinct",
    "entropy_bits",
    "unique_share",
];

/// One line per policy under a heading, columns aligned; random policies
/// are marked with the number of draws averaged.
pub fn table(evaluations: &[Evaluation]) -> String {
    let mut rows = vec![COLUMNS.map(str::to_owned)];
    rows.extend(evaluations.iter().map(cells));
    // Policy names read best left-aligned, numbers right-aligned.
    let mut out = crate::text_table::aligned(&rows, 1);
    if evaluations.iter().any(|e| e.runs > 1) {
        let runs = evaluations.iter().map(|e| e.runs).max().unwrap_or(1);
        let _ = writeln!(
            out,
            "(* random: distinct, entropy_bits and unique_share are means over {runs} draws; \
             beta and phi are exact)"
        );
    }
    out
}

/// A JSON array, one object per policy with the keys of the table.
pub fn json(evaluations: &[Evaluation]) -> String {
    let mut out = String::from("[");
    for (index, e) in evaluations.iter().enumerate() {
        out.push_str(if index == 0 { "\n  {" } else { ",\n  {" });
        for (field, (key, value)) in COLUMNS.iter().zip(json_values(e)).enumerate() {
            let separator = if field == 0 { "" } else { ", " };
            let _ = write!(out, "{separator}\"{key}\": {value}");
        }
        out.push('}');
    }
    out.push_str(if evaluations.is_empty() {
        "]\n"
    } else {
        "\n]\n"
    });
    out
}

/// The JSON values of one row, in the order of [`COLUMNS`].
fn json_values(e: &Evaluation) -> [String; 9] {
    [
        format!("\"{}\"", e.policy),
        e.n.to_string(),
        number(e.beta),
        number(e.beta_q),
        number(e.beta_r),
        number(e.phi),
        number(e.distinct),
        number(e.entropy_bits),
        number(e.unique_share),
    ]
}

fn cells(e: &Evaluation) -> [String; 9] {
    let marked = match e.runs > 1 {
        true => format!("{}*", e.policy),
        false => e.policy.to_string(),
    };
    let distinct = match e.runs > 1 {
        true => format!("{:.1}", e.distinct),
        false => format!("{:.0}", e.distinct),
    };
    [
        marked,
        e.n.to_string(),
        format!("{:.3}", e.beta),
        format!("{:.3}", e.beta_q),
        format!("{:.3}", e.beta_r),
        format!("{:.4}", e.phi),
        distinct,
        format!("{:.3}", e.entropy_bits),
        format!("{:.4}", e.unique_share),
    ]
}

/// A JSON number: Rust's shortest round-trip form; never NaN or infinite
/// here (a trace has at least one message of at least 12 octets), but
/// kept valid JSON if it were.
fn number(value: f64) -> String {
    match value.is_finite() {
        true => value.to_string(),
        false => "null".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation(policy: &str, runs: u32) -> Evaluation {
        Evaluation {
            policy: policy.parse().unwrap(),
            n: 4,
            beta: 2.5,
            beta_q: 3.0,
            beta_r: 2.25,
            phi: 0.625,
            distinct: 2.0,
            entropy_bits: 0.8112781244591328,
            unique_share: 0.25,
            runs,
            query_sizes: Vec::new(),
            response_sizes: Vec::new(),
        }
    }

    #[test]
    fn json_has_one_object_per_policy_with_the_documented_keys() {
        let text = json(&[evaluation("block:128/468", 1), evaluation("none", 1)]);
        assert!(text.starts_with("[\n  {\"policy\": \"block:128/468\", \"n\": 4, \"beta\": 2.5,"));
        assert!(
            text.contains("\"phi\": 0.625, \"distinct\": 2, \"entropy_bits\": 0.8112781244591328")
        );
        assert_eq!(text.matches("\"policy\"").count(), 2);
        assert!(text.ends_with("}\n]\n"));
        assert_eq!(json(&[]), "[]\n");
    }

    #[test]
    fn table_columns_line_up_and_random_rows_are_marked() {
        let text = table(&[evaluation("block:128/468", 1), evaluation("random:16", 20)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("policy"));
        assert_eq!(lines[1].len(), lines[2].len());
        assert!(lines[2].starts_with("random:16*"));
        assert!(lines[3].contains("20 draws"));
        assert_eq!(lines[1].find("0.6250"), lines[2].find("0.6250"));
    }
}
