//! The normalized part of the register: tables that carry only the participant's id
//! (as a real register keeps cards, bank accounts and payments), so a provincial rule
//! can reach them only through `participant`; a reference list of provinces without
//! personal data; and names that test quoting: the mixed-case table `"TheBHYT"` with a
//! column `"số thẻ"` and a column `"nơi đăng ký"` (a space and diacritics).

use super::{cents, copy, date, participants, PROVINCES};

/// Number of provinces in the reference list.
pub const PROVINCE_COUNT: usize = 63;

/// One row of `public.province`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Province {
    pub code: String,
    pub name: String,
}

/// One row of `public."TheBHYT"`: a health-insurance card, by its holder's id only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TheBhyt {
    pub id: i64,
    pub nguoi_id: i64,
    /// `"số thẻ"`, unique.
    pub so_the: String,
    /// `"nơi đăng ký"`.
    pub noi_dang_ky: String,
    pub valid_to: String,
}

/// One row of `public.bank_account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankAccount {
    pub id: i64,
    pub participant_id: i64,
    pub bank_code: &'static str,
    pub account_number: String,
    pub holder_email: String,
}

/// One row of `public.benefit_payment`: two foreign keys away from the participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenefitPayment {
    pub id: i64,
    pub bank_account_id: i64,
    pub amount: String,
    pub paid_on: String,
}

/// The provinces: the register's own five first, then others up to [`PROVINCE_COUNT`].
pub fn provinces() -> Vec<Province> {
    const NAMES: [&str; 5] = ["Hà Nội", "Hồ Chí Minh", "Đà Nẵng", "Hải Phòng", "Cần Thơ"];
    let mut out: Vec<Province> = PROVINCES
        .iter()
        .zip(NAMES)
        .map(|(code, name)| Province {
            code: (*code).to_owned(),
            name: name.to_owned(),
        })
        .collect();
    let mut n = 2;
    while out.len() < PROVINCE_COUNT {
        let code = format!("{n:02}");
        if !PROVINCES.contains(&code.as_str()) {
            out.push(Province {
                name: format!("Tỉnh số {code}"),
                code,
            });
        }
        n += 1;
    }
    out
}

/// One card per participant, same id.
pub fn the_bhyt() -> impl Iterator<Item = TheBhyt> {
    participants().map(|p| TheBhyt {
        id: p.id,
        nguoi_id: p.id,
        so_the: format!("HT3{}{:010}", p.province_code, 2_000_000 + p.id),
        noi_dang_ky: format!("Bệnh viện {} số {:02}", p.province_code, p.id % 11),
        valid_to: date(2026, 1 + (p.id % 12) as u32, 2 + (p.id % 27) as u32),
    })
}

const BANKS: [&str; 4] = ["VCB", "BIDV", "AGR", "TCB"];

/// One bank account per participant, same id.
pub fn bank_accounts() -> impl Iterator<Item = BankAccount> {
    participants().map(|p| BankAccount {
        id: p.id,
        participant_id: p.id,
        bank_code: BANKS[(p.id % 4) as usize],
        account_number: format!("{:013}", 9_700_000_000_000 + p.id * 37),
        holder_email: format!("tk{:06}@nganhang.vn", p.id),
    })
}

/// A payment for every other bank account.
pub fn benefit_payments() -> impl Iterator<Item = BenefitPayment> {
    bank_accounts()
        .filter(|a| a.id % 2 == 0)
        .map(|a| BenefitPayment {
            id: a.id / 2,
            bank_account_id: a.id,
            // Odd cents, never zero.
            amount: cents(
                200_000_000 + a.id as u64 * 4_321 / 100 * 100 + 2 * (a.id as u64 % 40) + 1,
            ),
            paid_on: date(2025, 1 + (a.id % 12) as u32, 2 + (a.id % 27) as u32),
        })
}

/// The DDL of the normalized tables (after `participant` exists).
pub(super) const SCHEMA: &str = "\
DROP TABLE IF EXISTS public.benefit_payment, public.bank_account, public.\"TheBHYT\", public.province CASCADE;
CREATE TABLE public.province (
    code char(2) PRIMARY KEY,
    name text NOT NULL
);
CREATE TABLE public.\"TheBHYT\" (
    id              bigint PRIMARY KEY,
    nguoi_id        bigint NOT NULL REFERENCES public.participant (id),
    \"số thẻ\"        varchar(15) NOT NULL UNIQUE,
    \"nơi đăng ký\"   text,
    valid_to        date NOT NULL
);
CREATE INDEX the_bhyt_nguoi_id_idx ON public.\"TheBHYT\" (nguoi_id);
CREATE TABLE public.bank_account (
    id             bigint PRIMARY KEY,
    participant_id bigint NOT NULL REFERENCES public.participant (id),
    bank_code      text NOT NULL,
    account_number varchar(20) NOT NULL UNIQUE,
    holder_email   text
);
CREATE INDEX bank_account_participant_id_idx ON public.bank_account (participant_id);
CREATE TABLE public.benefit_payment (
    id              bigint PRIMARY KEY,
    bank_account_id bigint NOT NULL REFERENCES public.bank_account (id),
    amount          numeric(12,2) NOT NULL,
    paid_on         date NOT NULL
);
CREATE INDEX benefit_payment_bank_account_id_idx ON public.benefit_payment (bank_account_id);
";

/// The normalized tables' data, as COPY blocks.
pub(super) fn data(sql: &mut String) {
    copy(
        sql,
        "public.province (code, name)",
        provinces()
            .into_iter()
            .map(|p| vec![Some(p.code), Some(p.name)]),
    );
    copy(
        sql,
        "public.\"TheBHYT\" (id, nguoi_id, \"số thẻ\", \"nơi đăng ký\", valid_to)",
        the_bhyt().map(|t| {
            vec![
                Some(t.id.to_string()),
                Some(t.nguoi_id.to_string()),
                Some(t.so_the),
                Some(t.noi_dang_ky),
                Some(t.valid_to),
            ]
        }),
    );
    copy(
        sql,
        "public.bank_account (id, participant_id, bank_code, account_number, holder_email)",
        bank_accounts().map(|a| {
            vec![
                Some(a.id.to_string()),
                Some(a.participant_id.to_string()),
                Some(a.bank_code.to_owned()),
                Some(a.account_number),
                Some(a.holder_email),
            ]
        }),
    );
    copy(
        sql,
        "public.benefit_payment (id, bank_account_id, amount, paid_on)",
        benefit_payments().map(|b| {
            vec![
                Some(b.id.to_string()),
                Some(b.bank_account_id.to_string()),
                Some(b.amount),
                Some(b.paid_on),
            ]
        }),
    );
}

/// The normalized tables, for ANALYZE.
pub(super) const TABLES: &str =
    "public.province, public.\"TheBHYT\", public.bank_account, public.benefit_payment";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_fit() {
        let provinces = provinces();
        assert_eq!(provinces.len(), PROVINCE_COUNT);
        let codes: std::collections::HashSet<_> = provinces.iter().map(|p| &p.code).collect();
        assert_eq!(codes.len(), PROVINCE_COUNT);
        let cards: std::collections::HashSet<_> = the_bhyt().map(|t| t.so_the).collect();
        assert_eq!(cards.len(), super::super::PARTICIPANTS as usize);
        assert!(cards.iter().all(|c| c.len() == 15));
        assert!(bank_accounts().all(|a| a.account_number.len() <= 20));
        assert!(benefit_payments().all(|b| !b.amount.ends_with(".00")));
    }
}
