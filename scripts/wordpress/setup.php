<?php
/**
 * Idempotent site setup for the private WordPress of scripts/wordpress-local.sh.
 *
 * Usage: php setup.php DOCROOT STATE_DIR
 *
 * - installs WordPress (wp_install) if not installed yet, admin user "admin"
 * - sets permalink structure /%postname%/ and the bundled minimal theme
 * - ensures the category "Readers' Views" exists
 * - ensures an application password named "readersviews-local" for admin,
 *   reusing the one stored in STATE_DIR/app-password if it is still valid
 * - writes STATE_DIR/env (shell-sourceable KEY=VALUE lines)
 * Diagnostics go to stderr; nothing is printed to stdout.
 */
if ($argc < 3) {
    fwrite(STDERR, "usage: php setup.php DOCROOT STATE_DIR\n");
    exit(2);
}
$docroot = rtrim($argv[1], '/');
$state = rtrim($argv[2], '/');

$url = getenv('WP_URL');
$parts = parse_url($url);
$_SERVER['HTTP_HOST'] = $parts['host'] . (isset($parts['port']) ? ':' . $parts['port'] : '');
$_SERVER['SERVER_NAME'] = $parts['host'];
$_SERVER['SERVER_PORT'] = isset($parts['port']) ? (string) $parts['port'] : '80';
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REQUEST_METHOD'] = 'GET';
$_SERVER['HTTPS'] = 'off';

define('WP_INSTALLING', true); // lets wp-load.php run before the site is installed
require $docroot . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-includes/class-wp-application-passwords.php';

function rv_read($file)
{
    return is_readable($file) ? trim((string) file_get_contents($file)) : '';
}

function rv_write_private($file, $contents)
{
    $tmp = $file . '.tmp';
    $old = umask(077);
    file_put_contents($tmp, $contents);
    umask($old);
    rename($tmp, $file);
}

function rv_die($msg)
{
    fwrite(STDERR, "setup.php: $msg\n");
    exit(1);
}

function rv_quote($value)
{
    $value = (string) $value;
    if ($value !== '' && preg_match('/^[A-Za-z0-9_.:\/@%+,=-]+$/', $value)) {
        return $value;
    }
    return "'" . str_replace("'", "'\\''", $value) . "'";
}

$admin_user = 'admin';
$admin_email = 'admin@example.com';
$admin_pass_file = $state . '/admin-password';
$admin_pass = rv_read($admin_pass_file);

// --- install --------------------------------------------------------------
if (!is_blog_installed()) {
    if ($admin_pass === '') {
        $admin_pass = wp_generate_password(24, false);
        rv_write_private($admin_pass_file, $admin_pass . "\n");
    }
    $result = wp_install("Readers' Views (local test)", $admin_user, $admin_email, false, '', wp_slash($admin_pass));
    if (empty($result['user_id'])) {
        rv_die('wp_install failed');
    }
    fwrite(STDERR, "setup.php: WordPress installed\n");
}

$user = get_user_by('login', $admin_user);
if (!$user) {
    rv_die("user $admin_user missing");
}
if ($admin_pass === '' || !wp_check_password($admin_pass, $user->user_pass, $user->ID)) {
    // state file lost or out of sync: reset to a fresh known password
    $admin_pass = wp_generate_password(24, false);
    wp_set_password($admin_pass, $user->ID);
    rv_write_private($admin_pass_file, $admin_pass . "\n");
}
wp_set_current_user($user->ID);

// --- options ----------------------------------------------------------------
update_option('blogdescription', 'Private local test instance');
update_option('default_comment_status', 'closed');
update_option('default_ping_status', 'closed');
update_option('timezone_string', 'UTC');

global $wp_rewrite;
if (get_option('permalink_structure') !== '/%postname%/' || !get_option('rewrite_rules')) {
    $wp_rewrite->set_permalink_structure('/%postname%/');
    flush_rewrite_rules(false); // soft: no .htaccess
}

if (get_option('stylesheet') !== 'readersviews-local' && wp_get_theme('readersviews-local')->exists()) {
    switch_theme('readersviews-local');
}

// --- category -----------------------------------------------------------------
$cat_name = "Readers' Views";
$term = term_exists('readers-views', 'category');
if (!$term) {
    $term = wp_insert_term($cat_name, 'category', array('slug' => 'readers-views'));
    if (is_wp_error($term)) {
        rv_die('category: ' . $term->get_error_message());
    }
}
$cat_id = (int) (is_array($term) ? $term['term_id'] : $term);

// --- application password ------------------------------------------------------
if (!wp_is_application_passwords_available()) {
    rv_die('application passwords not available (WP_ENVIRONMENT_TYPE must be local)');
}
$app_name = 'readersviews-local';
$app_file = $state . '/app-password';
$app_pass = rv_read($app_file);
$valid = false;
$items = WP_Application_Passwords::get_user_application_passwords($user->ID);
foreach ($items as $item) {
    if ($item['name'] !== $app_name) {
        continue;
    }
    if (!$valid && $app_pass !== '' && wp_check_password(preg_replace('/[^a-z\d]/i', '', $app_pass), $item['password'], $user->ID)) {
        $valid = true;
        continue;
    }
    WP_Application_Passwords::delete_application_password($user->ID, $item['uuid']);
}
if (!$valid) {
    $created = WP_Application_Passwords::create_new_application_password($user->ID, array('name' => $app_name));
    if (is_wp_error($created)) {
        rv_die('application password: ' . $created->get_error_message());
    }
    $app_pass = WP_Application_Passwords::chunk_password($created[0]);
    rv_write_private($app_file, $app_pass . "\n");
    fwrite(STDERR, "setup.php: created application password '$app_name'\n");
}

// --- env file --------------------------------------------------------------------
$env = array(
    'WP_URL' => $url,
    'WP_USER' => $admin_user,
    'WP_APP_PASSWORD' => $app_pass,
    'WP_ADMIN_PASSWORD' => $admin_pass,
    'WP_CATEGORY' => $cat_name,
    'WP_CATEGORY_ID' => $cat_id,
    'WP_LOCAL_DIR' => $state,
);
$out = '';
foreach ($env as $k => $v) {
    $out .= $k . '=' . rv_quote($v) . "\n";
}
rv_write_private($state . '/env', $out);
