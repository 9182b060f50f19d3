"""Multilingual probe strings for tokenizer parity, written for seachat.

Each language gets everyday sentences of the kind people type into a chat (greetings, prices,
dates, questions), and the edge cases that break converters: leading and repeated spaces, tabs
and newlines, emoji and ZWJ sequences, zero-width characters, combining marks in NFC and NFD,
digits, and text that merely looks like a control token.
"""

from __future__ import annotations

import unicodedata

# (label, text). Labels name the language by its FLORES-style code where there is one.
LANGUAGE_PROBES: tuple[tuple[str, str], ...] = (
    ("tha_Thai", "สวัสดีครับ วันนี้อากาศร้อนมาก อยากไปเที่ยวทะเลที่หัวหินช่วงสุดสัปดาห์"),
    ("tha_Thai", "ร้านกาแฟเปิดแปดโมงเช้า ราคาแก้วละ ๖๕ บาท รับบัตรเครดิตไหมคะ?"),
    ("khm_Khmr", "សួស្តី! ខ្ញុំចង់ទៅផ្សារថ្ងៃស្អែក ដើម្បីទិញបន្លែ និងត្រី។"),
    ("khm_Khmr", "តើអ្នកអាចជួយបកប្រែប្រយោគនេះជាភាសាអង់គ្លេសបានទេ?"),
    ("lao_Laoo", "ສະບາຍດີ ເຈົ້າສະບາຍດີບໍ່? ມື້ນີ້ຂ້ອຍຈະໄປຕະຫຼາດເຊົ້າ."),
    ("lao_Laoo", "ລາຄາເຂົ້າໜຽວໜຶ່ງກິໂລແມ່ນເທົ່າໃດ?"),
    ("mya_Mymr", "မင်္ဂလာပါ။ ဒီနေ့ ရန်ကုန်မှာ မိုးရွာနေတယ်။"),
    ("mya_Mymr", "ကျွန်တော် မြန်မာစာ သင်ယူနေပါတယ်၊ အကူအညီ လိုအပ်ရင် ပြောပါ။"),
    ("vie_Latn", "Xin chào! Hôm nay tôi muốn nấu phở bò cho cả gia đình."),
    ("vie_Latn", "Bạn có thể giải thích định lý Pythagore bằng tiếng Việt không?"),
    ("ind_Latn", "Selamat pagi, saya ingin memesan dua porsi nasi goreng dan es teh manis."),
    ("zsm_Latn", "Boleh saya tahu pukul berapa kereta api ke Johor Bahru bertolak?"),
    ("tgl_Latn", "Magandang umaga po! Saan po ang pinakamalapit na botika dito?"),
    ("jav_Latn", "Sugeng enjing, kula badhe tindak dhateng peken kaliyan simbah."),
    ("tam_Taml", "வணக்கம்! இன்று மாலை சென்னையில் மழை பெய்யும் என்று சொல்கிறார்கள்."),
    ("tam_Taml", "தமிழ் எழுத்துக்கள் கற்றுக்கொள்வது எனக்குப் பிடிக்கும்."),
    ("arb_Arab", "مرحبا! كيف حالك اليوم؟ أريد أن أتعلم الطبخ العربي."),
    ("arb_Arab", "السعر ١٢٥ ريالاً فقط، والتوصيل مجاني داخل المدينة."),
    ("zho_Hans", "你好！请问附近有没有便宜又好吃的饭店？"),
    ("hin_Deva", "नमस्ते! क्या आप मुझे दिल्ली जाने वाली अगली ट्रेन का समय बता सकते हैं?"),
    ("jpn_Jpan", "こんにちは。明日の会議は午後三時からですか？"),
    ("kor_Hang", "안녕하세요! 오늘 저녁에 같이 비빔밥 먹을래요?"),
    ("eng_Latn", "Hello! Could you summarise this article in three short bullet points?"),
    ("eng_Latn", "It's 7:45 p.m. and I've got 3 meetings left — we'll see."),
)

EDGE_PROBES: tuple[tuple[str, str], ...] = (
    ("leading space", " สวัสดี"),
    ("double spaces", "hello  world   and    more"),
    ("only spaces", "    "),
    ("newlines", "line one\nline two\n\nบรรทัดที่สาม\r\nend"),
    ("tabs", "\tindented\t\ttext\t"),
    ("trailing newline", "ສະບາຍດີ\n"),
    ("emoji", "I love mango sticky rice 🥭🍚😋!"),
    ("emoji zwj", "family 👨‍👩‍👧‍👦 and flag 🏳️‍🌈 and skin tone 👋🏽"),
    ("zwsp", "ภาษา\u200bไทย\u200bไม่มี\u200bช่องว่าง"),
    ("zwnj", "می\u200cخواهم and क्\u200dष"),
    ("khmer coeng", "ស្ត្រី ក្សត្រ"),
    ("burmese stacked", "သင်္ချိုင်း ကမ္ဘာ"),
    ("combining nfc", unicodedata.normalize("NFC", "Tiếng Việt có dấu: ệ ở ữ")),
    ("combining nfd", unicodedata.normalize("NFD", "Tiếng Việt có dấu: ệ ở ữ")),
    ("digits", "0 1 12 123 1234 12345 3.14159 1,000,000 ๑๒๓ ١٢٣ १२३"),
    ("looks special", "<s> </s> <start_of_turn>user <|im_start|> <|eot_id|> [INST] <unk>"),
    ("mixed scripts", "Thai ไทย Khmer ខ្មែរ Lao ລາວ Burmese မြန်မာ Arabic عربي 中文"),
    ("punctuation", "...!!! ??? ''' \"\"\" ``` --- === ~~~"),
    ("long word", "supercalifragilisticexpialidocious" * 3),
)

ALL_PROBES: tuple[tuple[str, str], ...] = LANGUAGE_PROBES + EDGE_PROBES


def probe_texts() -> list[str]:
    return [text for _, text in ALL_PROBES]
