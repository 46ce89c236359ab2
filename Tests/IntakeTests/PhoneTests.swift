import Testing

@testable import IntakeService

@Suite struct PhoneTests {
    @Test func fiveWaysOfWritingOneRussianNumberAreOne() {
        for text in [
            "+7 (912) 345-67-89", "89123456789", "8 912 345 67 89", "79123456789", "9123456789", "+79123456789", "8-912-345-67-89",
            "+7\u{00A0}912\u{00A0}345.67.89", "  8 (912) 345-67-89 ",
        ] {
            #expect(Phone.normalize(text, country: .russia) == .success("+79123456789"), "\(text)")
        }
    }

    @Test func textThatIsNotAPhoneIsRefused() {
        #expect(Phone.normalize("звоните вечером", country: .russia) == .failure(.notAPhone))
        #expect(Phone.normalize("+7 912 345-67-89 доб. 5", country: .russia) == .failure(.notAPhone))
        #expect(
            Phone.normalize("8 912\u{2009}345 67 89", country: .russia) == .failure(.notAPhone), "a thin space is not one of the separators"
        )
        #expect(Phone.normalize("7+9123456789", country: .russia) == .failure(.notAPhone), "a plus only in front")
        #expect(Phone.normalize("12", country: .russia) == .failure(.wrongLength(2)))
        #expect(Phone.normalize(String(repeating: "1", count: 20), country: .russia) == .failure(.wrongLength(20)))
        #expect(Phone.normalize("+7 912 345", country: .russia) == .failure(.wrongLength(7)))
        #expect(Phone.normalize("1234567890", country: .russia) == .failure(.notAPhone))
        // Read byte by byte: only U+00A0 of the two-byte characters is a separator, and a "+" alone
        // or "00" alone has no number after it.
        #expect(Phone.normalize("8 912 345 67 89 ©", country: .russia) == .failure(.notAPhone))
        #expect(Phone.normalize("8 912 345 67 8à9", country: .russia) == .failure(.notAPhone))
        #expect(Phone.normalize("+", country: .russia) == .failure(.notAPhone))
        #expect(Phone.normalize("\u{00A0}", country: .russia) == .failure(.notAPhone))
        #expect(Phone.normalize("00", country: .russia) == .failure(.wrongLength(0)))
        #expect(Phone.normalize("+7 912 345 67 890", country: .russia) == .failure(.wrongLength(12)))
    }

    @Test func otherCountriesAndInternationalForms() {
        let belarus = PhoneCountry.named("by")!
        #expect(Phone.normalize("80 29 123-45-67", country: belarus) == .success("+375291234567"))
        #expect(Phone.normalize("+375 29 123 45 67", country: .russia) == .success("+375291234567"))
        #expect(Phone.normalize("00 375 29 123 45 67", country: .russia) == .success("+375291234567"))
        #expect(PhoneCountry.named("XX") == nil)
    }

    @Test func formattedForPeople() {
        #expect(Phone.formatted("+79123456789") == "+7 912 345-67-89")
        #expect(Phone.formatted("+375291234567") == "+375291234567")
    }

    @Test func innCheckDigits() {
        #expect(INN.check("7707083893") == .success("7707083893"))
        #expect(INN.check("500100732259") == .success("500100732259"))
        #expect(INN.check("7707083894") == .failure(.checkDigit))
        #expect(INN.check("500100732258") == .failure(.checkDigit))
        #expect(INN.check("12345") == .failure(.length(5)))
        #expect(INN.check("77070838９3") == .failure(.notDigits))
        #expect(INN.check("ИНН 7707083893") == .failure(.notDigits))
    }
}
