//! The eight agencies: their shares of the traffic, the notice kinds they
//! send, how their systems write JSON and times, and their letterheads.
//!
//! Persian text below writes the zero-width non-joiner (U+200C, as in
//! "می‌رساند") as `\u{200c}`.

use karpoosheh_schemas::{LifeEvent, NoticeKind};

use crate::text::{
    CIVIL_FILLER, CIVIL_VARIANTS, INSURANCE_FILLER, INSURANCE_VARIANTS, JUDICIARY_FILLER,
    JUDICIARY_VARIANTS, MUNICIPALITY_FILLER, MUNICIPALITY_VARIANTS, SOCIAL_FILLER, SOCIAL_VARIANTS,
    TAX_FILLER, TAX_VARIANTS, TRAFFIC_FILLER, TRAFFIC_VARIANTS, UTILITIES_FILLER,
    UTILITIES_VARIANTS,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonStyle {
    Compact,
    PythonAscii,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeStyle {
    Utc,
    Tehran,
    /// Python's `isoformat()` with Asia/Tehran: microseconds and +03:30.
    Python,
}

impl TimeStyle {
    pub(crate) fn tehran(self) -> bool {
        !matches!(self, TimeStyle::Utc)
    }
    pub(crate) fn micros(self) -> bool {
        matches!(self, TimeStyle::Python)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum To {
    Any,
    Person,
}

/// One kind of notice an agency sends: kind, life event, and the Persian
/// titles and opening sentences for it.
#[derive(Debug)]
pub(crate) struct Variant {
    pub(crate) weight: f64,
    pub(crate) kind: NoticeKind,
    pub(crate) life: LifeEvent,
    pub(crate) to: To,
    pub(crate) titles: &'static [&'static str],
    pub(crate) leads: &'static [&'static str],
}

#[derive(Debug)]
pub(crate) struct AgencySpec {
    pub(crate) id: &'static str,
    pub(crate) share: f64,
    /// Share of this agency's notices that go to legal entities.
    pub(crate) legal_share: f64,
    pub(crate) salutation: &'static str,
    pub(crate) salutation_legal: &'static str,
    pub(crate) signature: &'static str,
    pub(crate) variants: &'static [Variant],
    pub(crate) filler: &'static [&'static str],
    pub(crate) attachments: &'static [&'static str],
    /// Amount range in rials and rounding.
    pub(crate) amount: (u64, u64, u64),
    pub(crate) expiry_years: &'static [u8],
    pub(crate) batch_prob: f64,
    /// P(level 2), P(level 3).
    pub(crate) access: (f64, f64),
    pub(crate) json: JsonStyle,
    pub(crate) time: TimeStyle,
    /// Leaves out `attachments` when empty and `min_access_level` when 1.
    pub(crate) omit_defaults: bool,
}

pub(crate) const AGENCY_COUNT: usize = 8;
pub(crate) const MUNICIPALITY: usize = 6;

pub(crate) static AGENCY_SHARES: [(&str, f64); AGENCY_COUNT] = [
    ("tax", 0.28),
    ("social-security", 0.18),
    ("judiciary", 0.15),
    ("utilities", 0.20),
    ("civil-registry", 0.05),
    ("traffic-police", 0.08),
    ("municipality", 0.04),
    ("insurance", 0.02),
];

pub(crate) static AGENCIES: [AgencySpec; AGENCY_COUNT] = [
    AgencySpec {
        id: "tax",
        share: 0.28,
        legal_share: 0.25,
        salutation: "مؤدی گرامی،",
        salutation_legal: "مؤدی محترم (شخص حقوقی)،",
        signature: "اداره کل امور مالیاتی استان {v}\nسازمان امور مالیاتی کشور",
        variants: TAX_VARIANTS,
        filler: TAX_FILLER,
        attachments: &[
            "برگ_تشخیص",
            "برگ_قطعی_مالیات",
            "صورتحساب_مالیاتی",
            "جدول_محاسبه_مالیات",
        ],
        amount: (5_000_000, 50_000_000_000, 1_000),
        expiry_years: &[5, 5, 7, 10, 10],
        batch_prob: 0.6,
        access: (0.05, 0.005),
        json: JsonStyle::Compact,
        time: TimeStyle::Tehran,
        omit_defaults: false,
    },
    AgencySpec {
        id: "social-security",
        share: 0.18,
        legal_share: 0.20,
        salutation: "بیمه\u{200c}شده گرامی،",
        salutation_legal: "کارفرمای محترم،",
        signature: "شعبه {b} سازمان تأمین اجتماعی {s}\nسازمان تأمین اجتماعی",
        variants: SOCIAL_VARIANTS,
        filler: SOCIAL_FILLER,
        attachments: &["فیش_مستمری", "لیست_حق_بیمه", "برگ_اجرایی", "سوابق_بیمه"],
        amount: (5_000_000, 2_000_000_000, 1_000),
        expiry_years: &[5, 10, 10],
        batch_prob: 0.5,
        access: (0.03, 0.0),
        json: JsonStyle::Compact,
        time: TimeStyle::Utc,
        omit_defaults: true,
    },
    AgencySpec {
        id: "judiciary",
        share: 0.15,
        legal_share: 0.10,
        salutation: "مخاطب محترم،",
        salutation_legal: "مدیرعامل محترم،",
        signature:
            "مدیر دفتر شعبه {b} دادگاه عمومی حقوقی شهرستان {s}\nقوه قضاییه جمهوری اسلامی ایران",
        variants: JUDICIARY_VARIANTS,
        filler: JUDICIARY_FILLER,
        attachments: &["دادنامه", "نسخه_دوم_دادخواست", "ضمائم_پرونده", "اجراییه"],
        amount: (10_000_000, 100_000_000_000, 100_000),
        expiry_years: &[10],
        batch_prob: 0.05,
        access: (0.40, 0.03),
        json: JsonStyle::PythonAscii,
        time: TimeStyle::Python,
        omit_defaults: false,
    },
    AgencySpec {
        id: "utilities",
        share: 0.20,
        legal_share: 0.08,
        salutation: "مشترک گرامی،",
        salutation_legal: "مشترک محترم (شخص حقوقی)،",
        signature:
            "امور مشترکین شهر {s}\nشرکت\u{200c}های خدمات\u{200c}رسان آب، برق و گاز استان {v}",
        variants: UTILITIES_VARIANTS,
        filler: UTILITIES_FILLER,
        attachments: &["صورتحساب", "قبض", "جزئیات_مصرف"],
        amount: (80_000, 30_000_000, 1_000),
        expiry_years: &[1, 2, 2, 3],
        batch_prob: 0.95,
        access: (0.0, 0.0),
        json: JsonStyle::Compact,
        time: TimeStyle::Utc,
        omit_defaults: true,
    },
    AgencySpec {
        id: "civil-registry",
        share: 0.05,
        legal_share: 0.0,
        salutation: "هموطن گرامی،",
        salutation_legal: "هموطن گرامی،",
        signature: "اداره کل ثبت احوال استان {v}\nسازمان ثبت احوال کشور",
        variants: CIVIL_VARIANTS,
        filler: CIVIL_FILLER,
        attachments: &["گواهی", "تصویر_سند", "رسید_پیگیری"],
        amount: (100_000, 3_000_000, 10_000),
        expiry_years: &[10],
        batch_prob: 0.1,
        access: (0.10, 0.0),
        json: JsonStyle::Compact,
        time: TimeStyle::Tehran,
        omit_defaults: false,
    },
    AgencySpec {
        id: "traffic-police",
        share: 0.08,
        legal_share: 0.05,
        salutation: "مالک محترم خودرو،",
        salutation_legal: "مدیر محترم ناوگان،",
        signature: "پلیس راهنمایی و رانندگی فراجا",
        variants: TRAFFIC_VARIANTS,
        filler: TRAFFIC_FILLER,
        attachments: &["تصویر_تخلف", "قبض_جریمه", "سوابق_تخلفات"],
        amount: (500_000, 10_000_000, 500_000),
        expiry_years: &[2, 3, 5],
        batch_prob: 0.7,
        access: (0.02, 0.0),
        json: JsonStyle::Compact,
        time: TimeStyle::Tehran,
        omit_defaults: true,
    },
    AgencySpec {
        id: "municipality",
        share: 0.04,
        legal_share: 0.10,
        salutation: "شهروند گرامی،",
        salutation_legal: "مدیرعامل محترم،",
        signature: "معاونت درآمد و امور مالی شهرداری {s}",
        variants: MUNICIPALITY_VARIANTS,
        filler: MUNICIPALITY_FILLER,
        attachments: &[
            "پروانه_ساختمانی",
            "نقشه_ملک",
            "رأی_کمیسیون",
            "صورتحساب_عوارض",
        ],
        amount: (1_000_000, 5_000_000_000, 1_000),
        expiry_years: &[3, 5, 10],
        batch_prob: 0.4,
        access: (0.05, 0.01),
        json: JsonStyle::Compact,
        time: TimeStyle::Utc,
        omit_defaults: false,
    },
    AgencySpec {
        id: "insurance",
        share: 0.02,
        legal_share: 0.10,
        salutation: "بیمه\u{200c}گذار گرامی،",
        salutation_legal: "بیمه\u{200c}گذار محترم (شخص حقوقی)،",
        signature: "بیمه مرکزی جمهوری اسلامی ایران",
        variants: INSURANCE_VARIANTS,
        filler: INSURANCE_FILLER,
        attachments: &["بیمه\u{200c}نامه", "گزارش_کارشناسی", "صورت_خسارت"],
        amount: (1_000_000, 500_000_000, 1_000),
        expiry_years: &[2, 3, 5],
        batch_prob: 0.3,
        access: (0.02, 0.0),
        json: JsonStyle::Compact,
        time: TimeStyle::Tehran,
        omit_defaults: false,
    },
];

pub(crate) fn pick_variant(variants: &'static [Variant], legal: bool, u: f64) -> &'static Variant {
    let ok = |v: &Variant| match v.to {
        To::Any => true,
        To::Person => !legal,
    };
    let total: f64 = variants.iter().filter(|v| ok(v)).map(|v| v.weight).sum();
    let mut x = u * total;
    for v in variants.iter().filter(|v| ok(v)) {
        if x < v.weight {
            return v;
        }
        x -= v.weight;
    }
    variants
        .iter()
        .rev()
        .find(|v| ok(v))
        .expect("every agency has a variant for anyone")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Traffic;

    #[test]
    fn agencies_are_consistent() {
        let total: f64 = Traffic::agencies().iter().map(|a| a.1).sum();
        assert!((total - 1.0).abs() < 1e-9);
        for (spec, (id, share)) in AGENCIES.iter().zip(Traffic::agencies()) {
            assert_eq!(spec.id, *id);
            assert_eq!(spec.share, *share);
            karpoosheh_schemas::AgencyId::parse(id).unwrap();
            let w: f64 = spec.variants.iter().map(|v| v.weight).sum();
            assert!((w - 1.0).abs() < 1e-9, "{id} variant weights add up to {w}");
        }
        let bad: f64 = Traffic::bad_mix().iter().map(|b| b.1).sum();
        assert!((bad - 1.0).abs() < 1e-9);
    }
}
