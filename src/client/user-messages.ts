import type { AgentErrorCode, SdkErrorCode } from './error-codes.js';

/** Languages of {@link KelidError.userMessage}. */
export type UserMessageLanguage = 'fa' | 'en';

interface Texts {
  fa: string;
  en: string;
}

// What a help desk would tell the person in front of the screen: what happened and what to do, with
// no codes or jargon. Keyed by every code, so a new code without texts does not compile.
export const USER_MESSAGES: Readonly<Record<AgentErrorCode | SdkErrorCode, Texts>> = {
  ERR_FORBIDDEN: {
    fa: 'این سایت اجازهٔ انجام این کار را ندارد. اگر فکر می‌کنید باید داشته باشد، با پشتیبانی سایت تماس بگیرید.',
    en: 'This site is not allowed to do that. If you think it should be, contact the site’s support.',
  },
  ERR_ORIGIN_DENIED: {
    fa: 'شما به‌تازگی درخواست این سایت را رد کرده‌اید. چند دقیقه صبر کنید و دوباره امتحان کنید.',
    en: 'You recently declined a request from this site. Wait a few minutes and try again.',
  },
  ERR_RATE_LIMITED: {
    fa: 'درخواست‌ها بیش از حد زیاد بوده است. کمی صبر کنید و دوباره امتحان کنید.',
    en: 'There have been too many requests. Wait a moment and try again.',
  },
  ERR_BUSY: {
    fa: 'برنامهٔ کلید منتظر تصمیم شما دربارهٔ درخواست دیگری است. ابتدا آن پنجره را پاسخ دهید.',
    en: 'Kelid is waiting for your answer to another request. Answer that window first.',
  },
  ERR_USER_CANCELLED: {
    fa: 'درخواست لغو شد.',
    en: 'The request was cancelled.',
  },
  ERR_CONSENT_TIMEOUT: {
    fa: 'زمان پاسخ به پنجرهٔ کلید تمام شد. دوباره امتحان کنید و در پنجرهٔ کلید تأیید کنید.',
    en: 'The Kelid window was not answered in time. Try again and confirm in the Kelid window.',
  },
  ERR_TOKEN_NOT_FOUND: {
    fa: 'توکن پیدا نشد. توکن را به رایانه وصل کنید و دوباره امتحان کنید.',
    en: 'The token was not found. Plug your token in and try again.',
  },
  ERR_TOKEN_REMOVED: {
    fa: 'توکن در میانهٔ کار جدا شد. آن را دوباره وصل کنید و از نو امتحان کنید.',
    en: 'The token was unplugged during the operation. Plug it back in and try again.',
  },
  ERR_TOKEN_NOT_INITIALIZED: {
    fa: 'این توکن هنوز آماده نشده است. برای راه‌اندازی آن به دفتر ثبت‌نام (RA) مراجعه کنید.',
    en: 'This token has not been set up yet. Take it to your registration office to have it set up.',
  },
  ERR_PIN_INCORRECT: {
    fa: 'رمز (PIN) اشتباه است. با دقت دوباره وارد کنید؛ چند بار اشتباه، توکن را قفل می‌کند.',
    en: 'The PIN is wrong. Type it again carefully: several wrong PINs lock the token.',
  },
  ERR_PIN_LOCKED: {
    fa: 'رمز توکن قفل شده است. برای باز کردن آن به دفتر ثبت‌نام (RA) یا پشتیبانی مراجعه کنید.',
    en: 'The token’s PIN is locked. Contact your registration office or support to unblock it.',
  },
  ERR_PIN_POLICY: {
    fa: 'رمز تازه قابل قبول نیست. رمزی با طول و نویسه‌های خواسته‌شده انتخاب کنید.',
    en: 'The new PIN is not accepted. Choose one with the required length and characters.',
  },
  ERR_PIN_EXPIRED: {
    fa: 'رمز توکن باید عوض شود. ابتدا رمز را در مدیریت توکن کلید تغییر دهید.',
    en: 'The token’s PIN must be changed. Change it in Kelid’s token manager first.',
  },
  ERR_KEY_NOT_FOUND: {
    fa: 'کلید لازم روی این توکن نیست. مطمئن شوید توکن درست را وصل کرده‌اید.',
    en: 'The needed key is not on this token. Check that the right token is plugged in.',
  },
  ERR_CERTIFICATE_NOT_FOUND: {
    fa: 'گواهی لازم روی توکن پیدا نشد. مطمئن شوید توکن درست را وصل کرده‌اید.',
    en: 'The needed certificate was not found on the token. Check that the right token is plugged in.',
  },
  ERR_CERTIFICATE_MISMATCH: {
    fa: 'این گواهی با کلیدهای روی توکن جور نیست. با دفتر ثبت‌نام (RA) تماس بگیرید.',
    en: 'This certificate does not match the keys on the token. Contact your registration office.',
  },
  ERR_CERTIFICATE_REVOKED: {
    fa: 'گواهی شما باطل شده است و با آن نمی‌توان امضا کرد. برای گواهی تازه به دفتر ثبت‌نام مراجعه کنید.',
    en: 'Your certificate has been revoked and cannot sign. Ask your registration office for a new one.',
  },
  ERR_CERTIFICATE_EXPIRED: {
    fa: 'گواهی شما منقضی شده (یا هنوز معتبر نشده) است. برای تمدید به دفتر ثبت‌نام مراجعه کنید.',
    en: 'Your certificate has expired (or is not valid yet). Ask your registration office to renew it.',
  },
  ERR_STATUS_UNAVAILABLE: {
    fa: 'اعتبار گواهی بررسی نشد. اتصال اینترنت را بررسی کنید و چند دقیقهٔ دیگر دوباره امتحان کنید.',
    en: 'The certificate’s validity could not be checked. Check your internet connection and try again in a few minutes.',
  },
  ERR_MECHANISM_UNSUPPORTED: {
    fa: 'توکن شما این نوع امضا را پشتیبانی نمی‌کند. با پشتیبانی سایت تماس بگیرید.',
    en: 'Your token does not support this kind of signature. Contact the site’s support.',
  },
  ERR_TOKEN_FULL: {
    fa: 'حافظهٔ توکن پر است. با دفتر ثبت‌نام (RA) برای پاک کردن موارد قدیمی تماس بگیرید.',
    en: 'The token’s memory is full. Contact your registration office to remove old items.',
  },
  ERR_MODULE_FAILED: {
    fa: 'نرم‌افزار توکن پاسخ نداد. توکن را جدا و دوباره وصل کنید و دوباره امتحان کنید.',
    en: 'The token’s software stopped responding. Unplug the token, plug it back in and try again.',
  },
  ERR_DEVICE_ERROR: {
    fa: 'توکن خطا داد. آن را جدا و دوباره وصل کنید؛ اگر تکرار شد با پشتیبانی تماس بگیرید.',
    en: 'The token reported an error. Unplug it and plug it back in; if it happens again, contact support.',
  },
  ERR_INVALID_INPUT: {
    fa: 'سایت درخواست نادرستی فرستاد. صفحه را تازه کنید؛ اگر تکرار شد با پشتیبانی سایت تماس بگیرید.',
    en: 'The site sent an invalid request. Reload the page; if it happens again, contact the site’s support.',
  },
  ERR_TIMESTAMP_FAILED: {
    fa: 'مهر زمانی گرفته نشد. اتصال اینترنت را بررسی کنید و دوباره امتحان کنید.',
    en: 'The time-stamp could not be obtained. Check your internet connection and try again.',
  },
  ERR_AUTH_TOKEN_INVALID: {
    fa: 'ورود تأیید نشد. دوباره وارد شوید.',
    en: 'The sign-in could not be verified. Please sign in again.',
  },
  ERR_KEY_PURPOSE: {
    fa: 'این گواهی برای این کار نیست (مثلاً گواهی امضا برای ورود). گواهی دیگری انتخاب کنید.',
    en: 'This certificate is not meant for this (for example, a signing certificate used to sign in). Choose another one.',
  },
  ERR_INTERNAL: {
    fa: 'خطای پیش‌بینی‌نشده‌ای در برنامهٔ کلید رخ داد. دوباره امتحان کنید؛ اگر تکرار شد با پشتیبانی تماس بگیرید.',
    en: 'Kelid ran into an unexpected error. Try again; if it happens again, contact support.',
  },
  ERR_AGENT_UNREACHABLE: {
    fa: 'برنامهٔ کلید روی این رایانه در دسترس نیست. مطمئن شوید نصب و در حال اجراست و مرورگر اجازهٔ دسترسی داده است.',
    en: 'Kelid is not reachable on this computer. Check that it is installed and running, and that the browser allowed access.',
  },
  ERR_AGENT_OUTDATED: {
    fa: 'نسخهٔ برنامهٔ کلید روی این رایانه قدیمی است. نسخهٔ تازه را نصب کنید و دوباره تلاش کنید.',
    en: 'The Kelid on this computer is too old for this site. Install the new version and try again.',
  },
  ERR_DISCONNECTED: {
    fa: 'اتصال به برنامهٔ کلید قطع شد. معلوم نیست کار انجام شد یا نه؛ پیش از تکرار، نتیجه را بررسی کنید.',
    en: 'The connection to Kelid was lost. It is not known whether the operation finished; check before trying again.',
  },
  ERR_TIMEOUT: {
    fa: 'پاسخی در زمان مقرر نرسید. دوباره امتحان کنید.',
    en: 'No answer came in time. Try again.',
  },
  ERR_ABORTED: {
    fa: 'درخواست لغو شد.',
    en: 'The request was cancelled.',
  },
  ERR_CLOSED: {
    fa: 'اتصال به برنامهٔ کلید بسته شده است. صفحه را تازه کنید.',
    en: 'The connection to Kelid has been closed. Reload the page.',
  },
  ERR_PROTOCOL: {
    fa: 'پاسخ نامفهومی از برنامهٔ کلید رسید. کلید را به‌روز کنید؛ اگر تکرار شد با پشتیبانی تماس بگیرید.',
    en: 'Kelid sent an answer that could not be understood. Update Kelid; if it happens again, contact support.',
  },
  ERR_PARSE_ERROR: {
    fa: 'سایت درخواست نادرستی فرستاد. صفحه را تازه کنید؛ اگر تکرار شد با پشتیبانی سایت تماس بگیرید.',
    en: 'The site sent an invalid request. Reload the page; if it happens again, contact the site’s support.',
  },
  ERR_INVALID_REQUEST: {
    fa: 'سایت درخواست نادرستی فرستاد. صفحه را تازه کنید؛ اگر تکرار شد با پشتیبانی سایت تماس بگیرید.',
    en: 'The site sent an invalid request. Reload the page; if it happens again, contact the site’s support.',
  },
  ERR_METHOD_NOT_FOUND: {
    fa: 'نسخهٔ برنامهٔ کلید برای این سایت قدیمی است. کلید را به‌روز کنید.',
    en: 'This version of Kelid is too old for this site. Update Kelid.',
  },
  ERR_INVALID_PARAMS: {
    fa: 'سایت درخواست نادرستی فرستاد. صفحه را تازه کنید؛ اگر تکرار شد با پشتیبانی سایت تماس بگیرید.',
    en: 'The site sent an invalid request. Reload the page; if it happens again, contact the site’s support.',
  },
  ERR_INVALID_ARGUMENT: {
    fa: 'سایت درخواست نادرستی آماده کرد. صفحه را تازه کنید؛ اگر تکرار شد با پشتیبانی سایت تماس بگیرید.',
    en: 'The site prepared an invalid request. Reload the page; if it happens again, contact the site’s support.',
  },
};

// A wrong PIN one try before the lock deserves its own warning.
const FINAL_TRY: Texts = {
  fa: 'رمز (PIN) اشتباه است. فقط یک بار دیگر فرصت دارید؛ رمز اشتباه بعدی توکن را قفل می‌کند.',
  en: 'The PIN is wrong. You have one try left: the next wrong PIN locks the token.',
};

const UNKNOWN: Texts = {
  fa: 'کار انجام نشد. دوباره امتحان کنید؛ اگر تکرار شد با پشتیبانی تماس بگیرید.',
  en: 'The operation failed. Try again; if it happens again, contact support.',
};

/** The text for `code` in `lang`; `finalTry` picks the last-try warning for a wrong PIN. */
export function userMessageFor(code: string, lang: UserMessageLanguage, finalTry = false): string {
  if (code === 'ERR_PIN_INCORRECT' && finalTry) return FINAL_TRY[lang];
  const texts = Object.prototype.hasOwnProperty.call(USER_MESSAGES, code)
    ? USER_MESSAGES[code as AgentErrorCode | SdkErrorCode]
    : UNKNOWN;
  return texts[lang];
}
