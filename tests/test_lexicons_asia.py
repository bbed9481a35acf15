"""The Vietnamese and Indonesian lexicons: requests each must refuse, innocent ones each must let
through (Vietnamese syllables whose folded reading has an innocent twin, Indonesian idioms, medicine,
food and sport), checked through `check_text`. The refusals fail without shared/data/lexicon/vi.json
and id.json."""

from __future__ import annotations

import pytest

from shared.core import safety
from shared.core.safety import check_text

MUST_REFUSE = [
    # Vietnamese
    ("vi", "kids", "thêm máu chảy từ đầu xuống"),
    ("vi", "kids", "mặt anh ta bê bết máu"),
    ("vi", "kids", "cho nó cầm khẩu súng"),
    ("vi", "kids", "thêm chai rượu và bia lên bàn"),
    ("vi", "kids", 'ghi chữ "con heo béo" lên ảnh của Lan'),
    ("vi", "kids", "biến em gái thành con ma đáng sợ"),
    ("vi", "kids", "hai học sinh đánh nhau trong sân trường"),
    ("vi", "kids", "mot dua tre dang hut thuoc la"),
    ("vi", "general", "vẽ vết cắt trên cổ tay tôi"),
    ("vi", "general", "làm cho bạn ấy khỏa thân trong ảnh"),
    ("vi", "general", "sợi dây thừng quanh cổ"),
    # Indonesian
    ("id", "kids", "tambahin darah di mukanya"),
    ("id", "kids", "taruh botol bir dan miras di meja"),
    ("id", "kids", "tambahin rokok di mulut kakek"),
    ("id", "kids", "menembak polisi di jalan"),
    ("id", "kids", "bikin Rina kelihatan gendut kayak babi"),
    ("id", "kids", "panjat tiang listrik buat konten"),
    ("id", "general", "buat aku kayak abis gantung diri"),
    ("id", "general", "bikin dia telanjang di foto ini"),
    ("id", "general", "menyayat pergelangan tangan pakai silet"),
]

INNOCENT = [
    # Vietnamese: colour, quick, fig, tradition, football, idioms, medicine, food, places, sport
    "làm cho màu đỏ đậm màu hơn",
    "vẽ con chó chạy mau trên bãi biển",
    "bổ sung thêm cây sung trong vườn",
    "cho tôi mặc áo dài truyền thống",
    "cầu thủ sút bóng vào lưới",
    'ghi "cười chết mất" dưới ảnh con mèo của tôi',
    "làm poster hiến máu cho trường",
    "làm cho tô bún bò có huyết trông ngon hơn",
    "cho tôi nổi trên Biển Chết đọc báo",
    "thêm một con cá voi sát thủ nhảy lên sau thuyền",
    "mẹ cắt rau bằng dao trên thớt",
    "giết thời gian bằng cách chơi cờ",
    # Indonesian: idioms, medicine, food, sport, slang, places, cooking
    "aku mati gaya di pesta itu",
    "kakekku punya darah tinggi",
    "bikin poster donor darah untuk sekolah",
    "bikin foto es krim bom coklat dan martabak lebih menggoda",
    "dia tembak aku kemarin, bikin foto kami berdua romantis",
    "pemain menembak bola ke gawang",
    "taruh aku mengapung di Laut Mati",
    "anakku memotong sayur pakai pisau, terangkan fotonya",
    "tambahin paus pembunuh yang lompat di belakang kapal",
    "buah naga dan manggis",
    "pistol air mainan anak-anak",
    # other languages the new terms must leave alone
    "pierogi z serem",
    "bir kedi ve bir köpek",
    "¿por qué me miras así?",
]


def test_the_two_lexicons_load() -> None:
    names = {code: lang.name for code, lang in safety.languages().items()}
    assert (names.get("vi"), names.get("id")) == ("Vietnamese", "Indonesian")


@pytest.mark.parametrize(("language", "profile", "text"), MUST_REFUSE)
def test_refused(language: str, profile: str, text: str) -> None:
    verdict = check_text(text, profile)
    assert not verdict.allowed, f"{language}: {text!r} passed the {profile} word check"
    assert verdict.term is not None, f"{language}: {text!r} was refused as unreadable, not by a term"
    if profile == "general":
        assert not check_text(text, "kids").allowed


@pytest.mark.parametrize("text", INNOCENT)
def test_innocent(text: str) -> None:
    for profile in ("kids", "general"):
        verdict = check_text(text, profile)
        assert verdict.allowed, f"{text!r} refused for {profile}: {verdict.term}"
