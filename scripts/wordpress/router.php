<?php
/**
 * Router for `php -S` so WordPress "pretty permalinks" (/wp-json/..., /%postname%/)
 * work without Apache mod_rewrite.  Part of scripts/wordpress-local.sh.
 *
 * Existing files and directories (incl. wp-admin/, *.php, static assets) are
 * served by the built-in server itself (return false); everything else is
 * handed to WordPress' front controller index.php.
 */
$root = rtrim($_SERVER['DOCUMENT_ROOT'], '/');
$path = rawurldecode((string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH));

if ($path !== '/' && strpos($path, '..') === false && file_exists($root . $path)) {
    return false;
}

$_SERVER['SCRIPT_NAME'] = '/index.php';
$_SERVER['SCRIPT_FILENAME'] = $root . '/index.php';
$_SERVER['PHP_SELF'] = '/index.php';
chdir($root);
require $root . '/index.php';
