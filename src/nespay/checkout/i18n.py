"""The checkout's two languages, English and Indonesian: every string the page shows, and
how the page picks one (`?lang=`, then the `nespay_lang` cookie it sets, then
`Accept-Language`, then English)."""

from __future__ import annotations

LANGUAGES = {"en": "English", "id": "Bahasa Indonesia"}
DEFAULT = "en"
COOKIE = "nespay_lang"

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "title": "Pay invoice {id}",
        "pay": "Pay {amount} {currency}",
        "amount_due": "Amount due",
        "send_exactly": "Send exactly this amount",
        "address": "Address",
        "network": "Network",
        "token_contract": "Token contract",
        "native_coin": "{currency} is the network's own coin (no token contract).",
        "warning": "Send only {currency} on {network}. Anything else sent to this address, "
        "or this currency on another network, will be lost.",
        "va_number": "Virtual account number",
        "va_how": "Transfer exactly this amount to this virtual account number from any "
        "Indonesian bank, in one transfer.",
        "copy": "Copy",
        "copied": "Copied",
        "qr_label": "QR code for paying {amount} {currency} on {network}",
        "qr_hint": "Scan with your wallet. Check the amount and the network before you send.",
        "qr_hint_address": "The QR code holds the address only: enter the amount yourself.",
        "expires_in": "Expires in",
        "expires_at": "Expires at {time} UTC",
        "choose": "Pay with",
        "status": "Status",
        "status_pending": "Waiting for your payment.",
        "status_partially_paid": "Part of the payment arrived. Still due: {due} {currency}.",
        "status_paid": "Payment received. Waiting for the network to confirm it.",
        "status_confirmed": "Payment confirmed. Thank you!",
        "status_expired": "This invoice expired. Do not send anything to it now. If you "
        "already sent a payment, contact the shop and give them the invoice number {id}.",
        "status_cancelled": "This invoice was cancelled by the shop. Do not send anything to it.",
        "status_invalid": "This invoice is no longer valid. Do not send anything to it; "
        "contact the shop with the invoice number {id}.",
        "return": "Return to the shop",
        "refresh": "This page refreshes by itself while the payment is on its way.",
        "invoice": "Invoice",
        "language": "Language",
        "not_found_title": "Invoice not found",
        "not_found": "There is no invoice at this address. Check the link the shop gave you, "
        "or ask the shop for a new one.",
    },
    "id": {
        "title": "Bayar tagihan {id}",
        "pay": "Bayar {amount} {currency}",
        "amount_due": "Jumlah yang harus dibayar",
        "send_exactly": "Kirim tepat sejumlah ini",
        "address": "Alamat",
        "network": "Jaringan",
        "token_contract": "Kontrak token",
        "native_coin": "{currency} adalah koin bawaan jaringan ini (tanpa kontrak token).",
        "warning": "Kirim hanya {currency} di jaringan {network}. Aset lain yang dikirim ke "
        "alamat ini, atau mata uang ini di jaringan lain, akan hilang.",
        "va_number": "Nomor virtual account",
        "va_how": "Transfer tepat sejumlah ini ke nomor virtual account ini dari bank mana "
        "pun di Indonesia, dalam satu kali transfer.",
        "copy": "Salin",
        "copied": "Tersalin",
        "qr_label": "Kode QR untuk membayar {amount} {currency} di jaringan {network}",
        "qr_hint": "Pindai dengan dompet Anda. Periksa jumlah dan jaringan sebelum mengirim.",
        "qr_hint_address": "Kode QR hanya berisi alamat: masukkan jumlahnya sendiri.",
        "expires_in": "Berakhir dalam",
        "expires_at": "Berakhir pada {time} UTC",
        "choose": "Bayar dengan",
        "status": "Status",
        "status_pending": "Menunggu pembayaran Anda.",
        "status_partially_paid": "Sebagian pembayaran sudah diterima. Sisa: {due} {currency}.",
        "status_paid": "Pembayaran diterima. Menunggu konfirmasi jaringan.",
        "status_confirmed": "Pembayaran terkonfirmasi. Terima kasih!",
        "status_expired": "Tagihan ini sudah berakhir. Jangan mengirim apa pun sekarang. Jika "
        "Anda sudah mengirim pembayaran, hubungi toko dengan nomor tagihan {id}.",
        "status_cancelled": "Tagihan ini dibatalkan oleh toko. Jangan mengirim apa pun.",
        "status_invalid": "Tagihan ini tidak berlaku lagi. Jangan mengirim apa pun; hubungi "
        "toko dengan nomor tagihan {id}.",
        "return": "Kembali ke toko",
        "refresh": "Halaman ini diperbarui sendiri selama pembayaran dalam proses.",
        "invoice": "Tagihan",
        "language": "Bahasa",
        "not_found_title": "Tagihan tidak ditemukan",
        "not_found": "Tidak ada tagihan di alamat ini. Periksa tautan dari toko, atau minta "
        "tagihan baru kepada toko.",
    },
}


def negotiate(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for choice in (query, cookie):
        if choice in MESSAGES:
            return choice
    for tag, _ in _ranked(accept_language or ""):
        primary = tag.split("-", 1)[0]
        if primary in MESSAGES:
            return primary
    return DEFAULT


def _ranked(header: str) -> list[tuple[str, float]]:
    """`Accept-Language`'s tags by quality (RFC 9110 §12.5.4); junk is skipped, not refused."""
    ranked: list[tuple[str, float]] = []
    for part in header.split(",")[:32]:
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            ranked.append((tag.strip().lower(), quality))
    return sorted(ranked, key=lambda item: -item[1])


class Translator:
    def __init__(self, language: str) -> None:
        self.language = language
        self._messages = MESSAGES[language]

    def __call__(self, key: str, **values: object) -> str:
        return self._messages[key].format(**values)

    def catalog(self, *keys: str) -> dict[str, str]:
        return {key: self._messages[key] for key in keys}
