// Original file: proto/psst/v1/psst.proto


/**
 * How to generate a value. Characters come from the included classes, minus exclude_characters.
 */
export interface GeneratorOptions {
  /**
   * Length in characters; 0 means the default, 32. At most 4096.
   */
  'length'?: (number);
  'excludeLowercase'?: (boolean);
  'excludeUppercase'?: (boolean);
  'excludeNumbers'?: (boolean);
  'excludePunctuation'?: (boolean);
  'includeSpace'?: (boolean);
  'excludeCharacters'?: (string);
  /**
   * At least one character of every included class. Unset means true.
   */
  'requireEachIncludedType'?: (boolean);
  '_requireEachIncludedType'?: "requireEachIncludedType";
}

/**
 * How to generate a value. Characters come from the included classes, minus exclude_characters.
 */
export interface GeneratorOptions__Output {
  /**
   * Length in characters; 0 means the default, 32. At most 4096.
   */
  'length': (number);
  'excludeLowercase': (boolean);
  'excludeUppercase': (boolean);
  'excludeNumbers': (boolean);
  'excludePunctuation': (boolean);
  'includeSpace': (boolean);
  'excludeCharacters': (string);
  /**
   * At least one character of every included class. Unset means true.
   */
  'requireEachIncludedType'?: (boolean);
  '_requireEachIncludedType'?: "requireEachIncludedType";
}
