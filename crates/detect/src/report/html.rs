//! Self-contained HTML: inline styles, inline SVG charts, nothing fetched.

use std::fmt::Write as _;

/// Escapes text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page around `body` (already HTML). Printable: A4, no dark background.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
<style>body{{font-family:sans-serif;margin:2em;color:#111}}h1{{font-size:1.4em}}h2{{font-size:1.1em;border-bottom:1px solid #999;margin-top:1.6em}}\
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #bbb;padding:.2em .5em;text-align:left;vertical-align:top}}\
th{{background:#eee}}.num{{text-align:right}}.high{{color:#a00;font-weight:bold}}.medium{{color:#a60}}.muted{{color:#666}}\
@media print{{body{{margin:0}}h2{{page-break-after:avoid}}table{{page-break-inside:avoid}}}}@page{{size:A4;margin:15mm}}</style></head>\
<body><h1>{t}</h1>\n{body}</body></html>\n",
        t = esc(title)
    )
}

/// A table from a header and rows of cells (already escaped HTML).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let class = if !cell.is_empty() && cell.chars().all(|c| c.is_ascii_digit() || c == ',')
            {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"muted\">none</td></tr>",
            header.len()
        );
    }
    out.push_str("</table>\n");
    out
}

/// A bar chart as inline SVG: one bar per (label, value).
pub fn bars(title: &str, data: &[(String, u64)]) -> String {
    let width = 720.0;
    let height = 160.0;
    let max = data.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let n = data.len().max(1) as f64;
    let slot = width / n;
    let mut out = format!(
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{t}\">",
        w = width,
        h = height + 40.0,
        t = esc(title)
    );
    for (i, (label, value)) in data.iter().enumerate() {
        let bar = (*value as f64 / max) * height;
        let x = i as f64 * slot;
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#4a78b5\"><title>{}: {}</title></rect>",
            x + slot * 0.1,
            height - bar,
            slot * 0.8,
            bar,
            esc(label),
            value
        );
        if data.len() <= 24 || i % (data.len() / 24 + 1) == 0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
                x + slot / 2.0,
                height + 12.0,
                esc(label)
            );
        }
    }
    let _ = writeln!(
        out,
        "<text x=\"0\" y=\"{:.1}\" font-size=\"10\" fill=\"#666\">max {}</text></svg><figcaption>{}</figcaption></figure>",
        height + 32.0,
        max as u64,
        esc(title)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_the_trail_are_escaped_and_nothing_is_fetched() {
        let hostile = "<script>alert(1)</script>\"'&";
        let html = page(
            "t",
            &(table(&["account"], &[vec![esc(hostile)]]) + &bars("rows", &[(hostile.into(), 3)])),
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        assert!(html.contains("<svg") && html.contains("</svg>"));
        for external in ["src=", "href=", "@import", "url("] {
            assert!(!html.contains(external), "{external} in {html}");
        }
        // An empty chart and table still render.
        assert!(bars("none", &[]).contains("</svg>"));
        assert!(table(&["a"], &[]).contains("none"));
    }
}
