"""Text handling for complex scripts: grapheme clusters, line breaks, terminal cell widths,
and safe decoding of streamed model output.

Thai, Lao, Khmer and Burmese write words without spaces and stack marks on their consonants;
Rich and Textual measure and wrap text one code point at a time and only break at spaces. The
modules here supply cluster- and dictionary-aware answers and install them into Rich/Textual.
"""
