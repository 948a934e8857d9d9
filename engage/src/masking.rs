//! Payment-card numbers typed into a chat are masked before anything stores or shows them.
//!
//! A card number is 13 to 19 ASCII digits, written together or in groups separated by single
//! spaces or dashes (`4111 1111 1111 1111`, `4111-1111-1111-1111`), whose last digit is a valid
//! Luhn check digit. Masking replaces every digit but the last four with `*` and keeps the
//! separators, so the agent still sees that a card number was sent and which one it was
//! (`**** **** **** 1111`).
//!
//! Digits that merely sit next to a card number do not hide it: `4111 1111 1111 1111 12 25`
//! (a number followed by an expiry date) is one run of 18 digits that fails the Luhn check,
//! so the groups of a run are also tried as shorter windows of whole groups. Phone numbers,
//! order numbers and dates are left alone unless they happen to be 13 to 19 digits long and
//! pass the Luhn check, which a detector based on the check digit cannot tell apart from a
//! card; masking such a number is the safe mistake.
//!
//! The scan works on bytes: ASCII digits, spaces and dashes never occur inside a multi-byte
//! UTF-8 sequence, so any text around the number (emoji, Cyrillic, CJK) is copied unchanged.

use std::borrow::Cow;

const MIN_DIGITS: usize = 13;
const MAX_DIGITS: usize = 19;
const KEEP_DIGITS: usize = 4;

/// Masks every payment-card number in `text`, keeping the last four digits and the
/// separators. Returns the text unchanged (borrowed) when it contains no card number.
pub fn mask_card_numbers(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    // Byte offsets of digits to replace with '*'.
    let mut masked: Vec<usize> = Vec::new();
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // A run: digit groups joined by single separators, each separator between digits.
        groups.clear();
        let mut start = i;
        loop {
            let mut end = start;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            groups.push((start, end));
            let joined = end + 1 < bytes.len()
                && matches!(bytes[end], b' ' | b'-')
                && bytes[end + 1].is_ascii_digit();
            if !joined {
                i = end;
                break;
            }
            start = end + 1;
        }
        mask_run(bytes, &groups, &mut masked);
    }
    if masked.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut next = masked.iter().peekable();
    for (offset, c) in text.char_indices() {
        if next.peek() == Some(&&offset) {
            next.next();
            out.push('*');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Finds card numbers among windows of whole groups of one run, left to right, preferring
/// the longest window that starts at each group, and records the digits to mask.
fn mask_run(bytes: &[u8], groups: &[(usize, usize)], masked: &mut Vec<usize>) {
    let mut first = 0;
    while first < groups.len() {
        let mut found = None;
        let mut digits = 0;
        for (last, &(start, end)) in groups.iter().enumerate().skip(first) {
            digits += end - start;
            if digits > MAX_DIGITS {
                break;
            }
            if digits >= MIN_DIGITS && luhn_valid(bytes, &groups[first..=last]) {
                found = Some((last, digits));
            }
        }
        match found {
            Some((last, digits)) => {
                let mut to_mask = digits - KEEP_DIGITS;
                'groups: for &(start, end) in &groups[first..=last] {
                    for offset in start..end {
                        if to_mask == 0 {
                            break 'groups;
                        }
                        masked.push(offset);
                        to_mask -= 1;
                    }
                }
                first = last + 1;
            }
            None => first += 1,
        }
    }
}

/// The Luhn (mod 10) check over the digits of `groups`, the last digit being the check digit.
fn luhn_valid(bytes: &[u8], groups: &[(usize, usize)]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for &(start, end) in groups.iter().rev() {
        for &b in bytes[start..end].iter().rev() {
            let mut d = u32::from(b - b'0');
            if double {
                d *= 2;
                if d > 9 {
                    d -= 9;
                }
            }
            sum += d;
            double = !double;
        }
    }
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_table() {
        let cases: &[(&str, &str)] = &[
            // Common test cards, in every spelling.
            ("4111111111111111", "************1111"),
            ("4111 1111 1111 1111", "**** **** **** 1111"),
            ("4111-1111-1111-1111", "****-****-****-1111"),
            ("4111-1111 1111-1111", "****-**** ****-1111"),
            ("5500 0000 0000 0004", "**** **** **** 0004"),
            ("3782 822463 10005", "**** ****** *0005"), // Amex, 15 digits
            ("4222222222222", "*********2222"),         // 13 digits
            ("4000 0000 0000 0000 006", "**** **** **** ***0 006"), // 19 digits
            ("4000000000000000006", "***************0006"),
            // A valid 16-digit prefix of a longer run that fails the check as a whole.
            ("6011 0000 0000 0004 000", "**** **** **** 0004 000"),
            // Embedded in text, with Unicode around it.
            (
                "my card is 4111 1111 1111 1111, thanks",
                "my card is **** **** **** 1111, thanks",
            ),
            ("Карта:4111111111111111!", "Карта:************1111!"),
            ("💳4111111111111111💳", "💳************1111💳"),
            (
                "カード 5500-0000-0000-0004 です",
                "カード ****-****-****-0004 です",
            ),
            // An expiry date right after the number does not hide it.
            ("4111 1111 1111 1111 12 25", "**** **** **** 1111 12 25"),
            ("cvc 123 4111 1111 1111 1111", "cvc 123 **** **** **** 1111"),
            // Two cards in one message.
            (
                "4111111111111111 or 5500000000000004",
                "************1111 or ************0004",
            ),
            // Left alone: Luhn failures, too short, too long, phone numbers, dates.
            ("4111 1111 1111 1112", "4111 1111 1111 1112"),
            ("1234567890123", "1234567890123"),
            ("411111111111", "411111111111"),
            ("41111111111111111111111", "41111111111111111111111"),
            ("call +1 (555) 123-4567", "call +1 (555) 123-4567"),
            ("+44 20 7946 0958", "+44 20 7946 0958"),
            ("030 1234 5678", "030 1234 5678"),
            ("order 2024-01-15", "order 2024-01-15"),
            // Double separators break a run.
            ("4111  1111  1111  1111", "4111  1111  1111  1111"),
            ("4111--1111--1111--1111", "4111--1111--1111--1111"),
            ("", ""),
            ("no digits at all", "no digits at all"),
        ];
        for (input, expected) in cases {
            assert_eq!(mask_card_numbers(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn text_without_a_card_is_borrowed() {
        assert!(matches!(
            mask_card_numbers("call me on 555 1234"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            mask_card_numbers("4111111111111111"),
            Cow::Owned(_)
        ));
    }

    #[test]
    fn luhn_check() {
        let check = |s: &str| luhn_valid(s.as_bytes(), &[(0, s.len())]);
        assert!(check("79927398713"));
        assert!(!check("79927398710"));
        assert!(check("4111111111111111"));
        assert!(!check("4111111111111112"));
    }
}
